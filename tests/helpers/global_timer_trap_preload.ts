/** Preloaded by tests (`deno run --preload=...`): sets the global timer trap before the program runs. */

import { installGlobalTimerTrap } from "./global_timer_trap.ts";

installGlobalTimerTrap();
