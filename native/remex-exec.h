/* remex-exec's modes that live in their own files. */
#ifndef REMEX_EXEC_H
#define REMEX_EXEC_H

/* The sandbox spawner (spawner.c): serves requests on stdin until it closes; returns the exit status. */
int remex_spawner(void);

/* Closes every descriptor from `first` up; 0, or -1 with errno when that cannot be done. */
int remex_close_from(int first);

#endif
