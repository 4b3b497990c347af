#include "store/key.h"
#include "store/store.h"

#include <errno.h>
#include <string.h>

static int component_check(const char *c, size_t n, int first)
{
	if (n == 0)
		return -EINVAL;
	if (n > KV_NAME_MAX)
		return -ENAMETOOLONG;
	if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
		return -EINVAL;
	if (first && n == 7 && !memcmp(c, ".search", 7))
		return -EINVAL;
	return 0;
}

int key_check(const char *key, size_t len)
{
	size_t start = 0, i;
	int rc;

	if (len == 0)
		return -EINVAL;
	if (len > KV_KEY_MAX)
		return -ENAMETOOLONG;
	if (key[0] == '/')
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (key[i] == '\0')
			return -EINVAL;
		if (key[i] != '/')
			continue;
		rc = component_check(key + start, i - start, start == 0);
		if (rc)
			return rc;
		start = i + 1;
	}
	/* A trailing '/' leaves an empty last component: the directory marker. */
	if (start == len)
		return 0;
	return component_check(key + start, len - start, start == 0);
}
