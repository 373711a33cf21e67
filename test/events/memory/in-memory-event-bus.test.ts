/** InMemoryEventBus: the EventBus conformance suite, one process, one bus (its peer is itself). */
import { InMemoryEventBus } from '../../../src/events/memory/in-memory-event-bus.js';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store.js';
import { eventBusConformance } from '../event-bus-conformance.js';

eventBusConformance('memory', async () => {
  const store = new SqliteStore({ path: ':memory:' });
  const bus = new InMemoryEventBus();
  return { store, bus, peer: bus, cleanup: () => store.close() };
});
