// What a sweep pass deleted, said in one line a pass (and one for the deletes that
// failed) rather than one per object: a pass may send up to `sweepDeletesPerPassMax`
// deletes, and a lasting fault (a sled that refuses deletes) would otherwise repeat a
// warning per object per pass. Each line names the first `sweepSummaryObjectsMax`
// objects and counts the rest, so a specific deletion can still be traced.

import type { Service } from "@ballast/runtime";
import { sweepSummaryObjectsMax } from "./constants.ts";

/** One object a sweep deleted or tried to: where, what, and how large. */
export interface SweptObject {
  sled: string;
  kind: "chunk" | "blob";
  object: string;
  bytes: number;
}

export class DeleteSummary {
  private freed = 0;
  private freedBytes = 0;
  private readonly freedObjects: SweptObject[] = [];
  private failed = 0;
  private readonly failedObjects: (SweptObject & { error: string })[] = [];

  constructor(private readonly objectsMax: number = sweepSummaryObjectsMax) {}

  deleted(object: SweptObject): void {
    this.freed++;
    this.freedBytes += object.bytes;
    if (this.freedObjects.length < this.objectsMax) this.freedObjects.push(object);
  }

  failedOn(object: SweptObject, error: string): void {
    this.failed++;
    if (this.failedObjects.length < this.objectsMax) this.failedObjects.push({ ...object, error });
  }

  /** Logs the pass's lines: `what` names the objects ("orphans", "leftovers of …"). */
  log(logger: Pick<Service["logger"], "info" | "warn">, what: string, context = {}): void {
    if (this.freed > 0) {
      logger.info(
        {
          ...context,
          deleted: this.freed,
          bytes: this.freedBytes,
          objects: this.freedObjects,
          ...(this.freed > this.freedObjects.length
            ? { notNamed: this.freed - this.freedObjects.length }
            : {}),
        },
        `deleted ${what} this pass`,
      );
    }
    if (this.failed > 0) {
      logger.warn(
        {
          ...context,
          failed: this.failed,
          objects: this.failedObjects,
          ...(this.failed > this.failedObjects.length
            ? { notNamed: this.failed - this.failedObjects.length }
            : {}),
        },
        `could not delete ${what} this pass; they are tried again next pass`,
      );
    }
  }
}
