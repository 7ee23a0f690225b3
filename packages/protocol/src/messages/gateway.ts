// What the coordinator tells a gateway.

import { z } from "zod";
import { unsignedInteger, volumeName } from "./fields.ts";

/**
 * Volume `volume` shrank (its record already says so): a gateway serving it describes
 * it again, so that its shared Volume refuses writes past the new end (NBD_ENOSPC)
 * instead of letting connections opened at the old size write where the next grow
 * trims. Answers once the new size is learned; a gateway not serving it does nothing.
 */
export const GatewayVolumeShrunk = z.object({
  type: z.literal("gateway.volume.shrunk.v1"),
  volume: volumeName,
});

export const GatewayVolumeShrunkResult = z.object({
  /** Whether the gateway had the volume open (and so described it again). */
  open: z.boolean(),
  /** The size it serves from now on, when open. */
  sizeBytes: unsignedInteger.optional(),
});
