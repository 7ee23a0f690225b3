// Volume incarnations. A volume's id is `<incarnation>-<nonce>`: the incarnation is a
// number (base 36) that grows by one every time the name is created again (the
// coordinator keeps a counter per name that a delete never removes), and the nonce makes
// the id unique even if a counter were ever lost. Head nodes order ids by incarnation so
// that a configure delayed from a deleted incarnation can never replace the current
// one's replica. An id without that shape (static assignments use the volume's name)
// is incarnation 0.

const idPattern = /^([0-9a-z]{1,10})-[0-9a-z-]+$/;

export function formatVolumeId(incarnation: number, nonce: string): string {
  return `${incarnation.toString(36)}-${nonce}`;
}

export function incarnationOf(volumeId: string): number {
  const match = idPattern.exec(volumeId);
  if (match === null) return 0;
  const incarnation = Number.parseInt(match[1]!, 36);
  return Number.isSafeInteger(incarnation) ? incarnation : 0;
}
