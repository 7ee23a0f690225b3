// Volume incarnations. A volume's id is `<incarnation>-<nonce>`: the incarnation is a
// number (base 36) that grows by one every time the name is created again (the
// coordinator keeps a counter per name that a delete never removes), and the nonce makes
// the id unique even if a counter were ever lost. Head nodes order ids by incarnation so
// that a configure delayed from a deleted incarnation can never replace the current
// one's replica. An id without that shape (static assignments use the volume's name)
// is incarnation 0.
//
// The coordinator draws the nonce as `volumeIdNonceBytes` random bytes in hex, so the
// ids it issues have a narrower shape than `incarnationOf` accepts: static names such
// as `vol-a` fit the loose shape, but not `isIssuedVolumeId`. Where a wrong guess would
// lose data (a head node removing the files of an incarnation the coordinator says is
// gone), only issued ids are candidates.

/** Random bytes in a volume id's nonce (written in hex: twice as many characters). */
export const volumeIdNonceBytes = 6;

const idPattern = /^([0-9a-z]{1,10})-[0-9a-z-]+$/;

export function formatVolumeId(incarnation: number, nonce: string): string {
  return `${incarnation.toString(36)}-${nonce}`;
}

const issuedIdPattern = new RegExp(`^[0-9a-z]{1,10}-[0-9a-f]{${2 * volumeIdNonceBytes}}$`);

/**
 * Whether `volumeId` has the shape of an id the coordinator issues (`<incarnation in
 * base 36>-<nonce in hex>`; before incarnations, the first part was the creation time in
 * base 36, which fits too). A static assignment's id (the volume's name) almost never does.
 */
export function isIssuedVolumeId(volumeId: string): boolean {
  return issuedIdPattern.test(volumeId);
}

export function incarnationOf(volumeId: string): number {
  const match = idPattern.exec(volumeId);
  if (match === null) return 0;
  const incarnation = Number.parseInt(match[1]!, 36);
  return Number.isSafeInteger(incarnation) ? incarnation : 0;
}
