// The leader's answer to `headnode.leftovers.v1`: a head node lists the incarnations it
// keeps replica directories of but does not host, and asks which are gone. The purge
// record's owed drop (purger.ts) reaches a node only while the record lasts (a day at
// most); a node away longer kept those directories for good. The decision is
// incarnations.ts's; this file reads the records and keeps to the tenure.
//
// Order, as in the leftover sweep (leftover-sweeper.ts, "Order matters"): the head node
// lists its directories before it sends, and the records are read after the request
// arrives, so a directory it listed was made by a configure of a partition record that
// existed before the read; an id the read finds in no record was deleted since, and no
// configure of it can be current again (ids are never reused).
//
// Cost: the leader's own copy of the catalogue (its tenure's volumes and partition
// records) answers "named" for the ids of live volumes, which is what a restarted node
// mostly asks about before its replicas are configured again; only ids that copy does
// not name cost a read of the catalogue (every volume, partition and purge record).
// Those are rare: the node removes the ones found gone and stops asking.
//
// Failure model: only a ready tenure answers (before it has fenced, its copy and its
// reads may be a deposed leader's view); a read that fails, or a tenure that ended
// during the read, answers Unavailable, and the node keeps everything and asks later.
// The copy can only err towards keeping: it names an id, and the node keeps it.

import { BallastError, ErrorCode, type MessageOf, type ResultOf } from "@ballast/protocol";
import type { Service } from "@ballast/runtime";
import type { Catalogue } from "./catalogue.ts";
import { goneIncarnationsOf, namedIncarnationsOf } from "./incarnations.ts";
import type { StoreMarks } from "./store-marks.ts";
import type { Tenure, Tenures } from "./tenure.ts";

export interface LeftoverDirectoriesOptions {
  service: Pick<Service, "logger">;
  catalogue: Pick<Catalogue, "volumes" | "allPartitions" | "purges">;
  tenures: Pick<Tenures, "current">;
  /** Whether the catalogue is the one the cluster's data was made under (store-marks.ts). */
  marks: Pick<StoreMarks, "refusal">;
}

export class LeftoverDirectories {
  constructor(private readonly options: LeftoverDirectoriesOptions) {}

  async onAsk(
    tenure: Tenure,
    message: MessageOf<"headnode.leftovers.v1">,
  ): Promise<ResultOf<"headnode.leftovers.v1">> {
    const { catalogue, tenures, service } = this.options;
    if (!tenure.ready) {
      throw new BallastError(
        ErrorCode.Unavailable,
        "the leader has not fenced the catalogue yet: it cannot tell which incarnations are gone; ask again later",
      );
    }
    const inCopy = namedIncarnationsOf({
      volumes: [...tenure.volumes.values()],
      partitions: [...tenure.records.values()].map((entry) => entry.value),
      purges: [],
    });
    const unnamed = goneIncarnationsOf(message.volumeIds, inCopy);
    if (unnamed.length === 0) return { gone: [] };
    // A lost or replaced control store names none of the node's incarnations: each would
    // read as gone (store-marks.ts).
    const refusal = this.options.marks.refusal();
    if (refusal !== undefined) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `cannot tell which incarnations are gone: ${refusal}`,
      );
    }
    const [volumes, partitions, purges] = await Promise.all([
      catalogue.volumes(),
      catalogue.allPartitions(),
      catalogue.purges(),
    ]);
    if (tenures.current() !== tenure) {
      throw new BallastError(
        ErrorCode.Unavailable,
        "leadership changed while reading the catalogue; ask again",
      );
    }
    const gone = goneIncarnationsOf(
      unnamed,
      namedIncarnationsOf({
        volumes,
        partitions: partitions.map((entry) => entry.value),
        purges,
      }),
    );
    if (gone.length > 0) {
      service.logger.info(
        { node: message.node, gone },
        "told a head node which incarnations it keeps files of are gone",
      );
    }
    return { gone };
  }
}
