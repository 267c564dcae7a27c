// Byte units as Ferry's messages and displays print them.

export const MiB = 2 ** 20;

/** A rate in MiB/s: one decimal below 10 MiB/s, whole numbers from there ("0.5 MiB/s", "118 MiB/s"). */
export const mibps = (bytesPerS: number): string => `${(bytesPerS / MiB).toFixed(bytesPerS < 10 * MiB ? 1 : 0)} MiB/s`;
