// Helpers for scenario tests that step a replica core by hand: pick effects of one kind,
// and make journal appends durable at once.

import type { Effect } from "../src/replica/effects.ts";
import type { Replica } from "../src/replica/replica.ts";

/** The effects of one type, typed as such. */
export function only<T extends Effect["type"]>(
  effects: Effect[],
  type: T,
): Extract<Effect, { type: T }>[] {
  return effects.filter((effect): effect is Extract<Effect, { type: T }> => effect.type === type);
}

/** Makes every journal append of `core` durable at once; returns what that produced. */
export function syncJournal(core: Replica, effects: Effect[]): Effect[] {
  const out: Effect[] = [];
  for (const append of only(effects, "journal.append")) {
    const last = append.notes[append.notes.length - 1];
    if (last !== undefined) {
      core.onJournalDurable(last.opNum, append.generation);
      out.push(...core.drainEffects());
    }
  }
  return out;
}
