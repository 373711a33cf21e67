/* remex-exec's modes that live in their own files. */
#ifndef REMEX_EXEC_H
#define REMEX_EXEC_H

/* The sandbox spawner (spawner.c): serves requests on stdin until it closes; returns the exit status. */
int remex_spawner(void);

#endif
