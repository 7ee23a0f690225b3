// Test and benchmark helpers for the replica core's checkpoint publication (see
// replica/effects.ts): a pointer for a stored checkpoint, and all of the steps after the
// local write carried out at once, as a shell whose sleds and coordinator never fail would.

import type { CheckpointPointer, Effect } from "../replica/effects.ts";
import type { Replica } from "../replica/replica.ts";

/** The pointer a store on two sleds gives for a `checkpoint.store` effect. */
export function storedPointer(
  effect: Extract<Effect, { type: "checkpoint.store" }>,
  sleds: readonly string[] = ["sled-1", "sled-2"],
  createdAtMs = 0,
): CheckpointPointer {
  return {
    opNum: effect.opNum,
    blobKey: effect.blobKey,
    sleds: [...sleds],
    bytes: effect.snapshot.byteLength,
    createdAtMs,
  };
}

/**
 * Reports checkpoint `opNum` durable, stored and recorded (replacing `replaced`). Returns
 * the pointer and any other effects drained on the way; the effects of the record
 * (release, blob delete) stay in the core for the caller to drain.
 */
export function publishCheckpoint(
  core: Replica,
  opNum: number,
  replaced?: CheckpointPointer,
): { pointer: CheckpointPointer; others: Effect[] } {
  const others: Effect[] = [];
  core.onCheckpointDurable(opNum);
  const store = take(core.drainEffects(), "checkpoint.store", others);
  const pointer = storedPointer(store);
  core.onCheckpointStored(opNum, pointer);
  take(core.drainEffects(), "checkpoint.record", others);
  core.onCheckpointRecorded(opNum, replaced);
  return { pointer, others };
}

function take<T extends Effect["type"]>(
  effects: Effect[],
  type: T,
  others: Effect[],
): Extract<Effect, { type: T }> {
  let found: Extract<Effect, { type: T }> | undefined;
  for (const effect of effects) {
    if (effect.type === type && found === undefined) found = effect as Extract<Effect, { type: T }>;
    else others.push(effect);
  }
  if (found === undefined) throw new Error(`expected a ${type} effect`);
  return found;
}
