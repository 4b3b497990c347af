/*
 * crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of WAL records, WAL segment headers and snapshots.
 *
 * crc32c(0, "123456789", 9) == 0xE3069283 (the standard check value).
 * Extending works piecewise: crc32c(crc32c(0, a, n), b, m) equals the CRC of
 * the concatenation a||b.
 */
#ifndef KVFS_CRC32C_H
#define KVFS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable slice-by-8 version (exported so tests can compare it against
 * the hardware path). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
