/*
 * path.c — FUSE path <-> store key mapping and name escaping (see path.h).
 */
#include "fs/path.h"

#include <errno.h>
#include <string.h>

#include "store/store.h"

const char *fsp_key(const char *path, size_t *klen)
{
	while (*path == '/')
		path++;
	*klen = strlen(path);
	return path;
}

int fsp_check(const char *key, size_t klen, int is_dir)
{
	size_t i, start = 0;

	if (klen == 0)
		return -EPERM; /* the root has no key of its own */
	if (klen + (is_dir ? 1 : 0) > KV_KEY_MAX)
		return -ENAMETOOLONG;
	for (i = 0; i <= klen; i++) {
		if (i < klen && key[i] != '/')
			continue;
		size_t n = i - start;
		if (n == 0)
			return -EINVAL;
		if (n > KV_NAME_MAX)
			return -ENAMETOOLONG;
		if (start == 0 && n == sizeof(FSP_SEARCH_DIR) - 1 &&
		    memcmp(key, FSP_SEARCH_DIR, n) == 0)
			return -EPERM;
		if ((n == 1 && key[start] == '.') ||
		    (n == 2 && key[start] == '.' && key[start + 1] == '.'))
			return -EINVAL;
		start = i + 1;
	}
	return 0;
}

int fsp_is_search(const char *path)
{
	size_t n = sizeof(FSP_SEARCH_DIR) - 1;

	while (*path == '/')
		path++;
	return strncmp(path, FSP_SEARCH_DIR, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int fsp_dirkey(const char *key, size_t klen, char *buf, size_t bufsz)
{
	if (klen + 2 > bufsz || klen + 1 > KV_KEY_MAX)
		return -ENAMETOOLONG;
	memcpy(buf, key, klen);
	buf[klen] = '/';
	buf[klen + 1] = '\0';
	return (int)(klen + 1);
}

int fsp_escape(const char *key, size_t klen, char *out, size_t outsz)
{
	size_t i, o = 0;

	for (i = 0; i < klen; i++) {
		const char *rep = NULL;
		if (key[i] == '%')
			rep = "%25";
		else if (key[i] == '/')
			rep = "%2F";
		size_t n = rep ? 3 : 1;
		if (o + n > KV_NAME_MAX || o + n + 1 > outsz)
			return -ENAMETOOLONG;
		if (rep)
			memcpy(out + o, rep, 3);
		else
			out[o] = key[i];
		o += n;
	}
	if (o + 1 > outsz)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return (int)o;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int fsp_unescape(const char *name, char *out, size_t outsz)
{
	size_t o = 0;

	while (*name) {
		char c = *name++;
		if (c == '%') {
			int hi = name[0] ? hexval(name[0]) : -1;
			int lo = hi >= 0 && name[1] ? hexval(name[1]) : -1;
			if (hi < 0 || lo < 0)
				return -EINVAL;
			c = (char)(hi * 16 + lo);
			name += 2;
		}
		if (o + 2 > outsz)
			return -ENAMETOOLONG;
		out[o++] = c;
	}
	out[o] = '\0';
	return (int)o;
}

int fsp_child(const char *key, size_t klen, size_t plen, size_t *nlen)
{
	const char *rest = key + plen;
	size_t rlen = klen - plen;
	const char *slash;

	if (rlen == 0) {
		*nlen = 0;
		return -1;
	}
	slash = memchr(rest, '/', rlen);
	if (!slash) {
		*nlen = rlen;
		return 0;
	}
	*nlen = (size_t)(slash - rest);
	return 1;
}
