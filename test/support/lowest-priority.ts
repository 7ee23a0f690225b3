// Setup for the simulation tier (vitest.config.ts): the seeded simulator is pure CPU and
// knows nothing of wall time, so it runs beside the integration tier at the lowest
// scheduling priority, taking only the CPU the real processes leave idle (they mostly
// wait on leases, heartbeats and disks). Raising one's own nice value needs no privilege.

import { setPriority } from "node:os";

/** The weakest nice value: a runnable process at nice 0 gets almost every cycle first. */
const lowestPriority = 19;

setPriority(lowestPriority);
