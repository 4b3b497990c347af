/*
 * key.h — validity of store keys (the file system maps paths to keys).
 */
#ifndef KVFS_KEY_H
#define KVFS_KEY_H

#include <stddef.h>

/*
 * Returns 0 when `key` (len bytes, not NUL-terminated) is a valid key:
 *   - non-empty, at most KV_KEY_MAX bytes            [else -EINVAL / -ENAMETOOLONG]
 *   - no NUL byte, does not start with '/'           [-EINVAL]
 *   - '/'-separated components, none empty ("a//b"), except that ONE trailing
 *     '/' is allowed: "a/b/" is a directory marker key [-EINVAL]
 *   - no component "." or ".."                       [-EINVAL]
 *   - each component at most KV_NAME_MAX bytes        [-ENAMETOOLONG]
 *   - the first component is not ".search" (reserved for the search view) [-EINVAL]
 * When a key breaks several rules, the first one met scanning left to right
 * decides, except that the total length is checked first.
 */
int key_check(const char *key, size_t len);

#endif
