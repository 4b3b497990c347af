/*
 * test_resp.c — the RESP2 parser and encoders on their own: every request is
 * also fed split at every byte boundary, and malformed headers are refused.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cluster/resp.h"

#define BIG (1u << 20)

/* Parses `in` given `cut` bytes first, then everything; returns the argv as
 * "a|b|c" in out. */
static int parse_split(const char *in, size_t len, size_t cut, char *out, size_t *used)
{
	struct resp_parser p;
	struct resp_arg *av;
	size_t ac, need, i;
	int rc;

	memset(&p, 0, sizeof p);
	resp_parser_reset(&p);
	if (cut < len) {
		/* Copy so the second call sees a different buffer address. */
		char *part = malloc(cut + 1);

		memcpy(part, in, cut);
		rc = resp_parse(&p, part, cut, BIG, BIG, &av, &ac, used, &need);
		free(part);
		if (rc != 0) {
			resp_parser_free(&p);
			return rc == 1 ? 100 : rc;
		}
	}
	rc = resp_parse(&p, in, len, BIG, BIG, &av, &ac, used, &need);
	out[0] = 0;
	if (rc == 1) {
		for (i = 0; i < ac; i++) {
			if (i)
				strcat(out, "|");
			strncat(out, av[i].p, av[i].len);
		}
	}
	resp_parser_free(&p);
	return rc;
}

static void multibulk_parses_at_every_split(void **state)
{
	const char *in = "*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$0\r\n\r\n";
	size_t len = strlen(in), cut, used;
	char out[256];

	(void)state;
	for (cut = 0; cut <= len; cut++) {
		assert_int_equal(parse_split(in, len, cut, out, &used), 1);
		assert_string_equal(out, "SET|hello|");
		assert_int_equal(used, len);
	}
}

static void inline_commands_split_like_redis(void **state)
{
	size_t used;
	char out[256];

	(void)state;
	assert_int_equal(parse_split("SET a b\r\n", 9, 9, out, &used), 1);
	assert_string_equal(out, "SET|a|b");
	assert_int_equal(parse_split("set \"a b\" 'c d'\n", 16, 16, out, &used), 1);
	assert_string_equal(out, "set|a b|c d");
	assert_int_equal(parse_split("echo \"\\x41\\n\"\n", 14, 14, out, &used), 1);
	assert_string_equal(out, "echo|A\n");
	assert_int_equal(parse_split("echo \"abc\n", 10, 10, out, &used), -EPROTO);
	assert_int_equal(parse_split("PING", 4, 4, out, &used), 0); /* no newline yet */
	assert_int_equal(parse_split("\r\n", 2, 2, out, &used), 1);  /* empty line */
	assert_string_equal(out, "");
}

static void malformed_headers_are_refused(void **state)
{
	size_t used;
	char out[256];

	(void)state;
	/* A bulk length beyond the limit: refused before any allocation. */
	assert_int_equal(parse_split("*1\r\n$99999999999\r\n", 19, 19, out, &used), -EMSGSIZE);
	assert_int_equal(parse_split("*99999999999\r\n", 14, 14, out, &used), -EMSGSIZE);
	assert_int_equal(parse_split("*5000000\r\n", 10, 10, out, &used), -E2BIG);
	assert_int_equal(parse_split("*1\r\n$-5\r\n", 9, 9, out, &used), -EPROTO);
	assert_int_equal(parse_split("*1\r\n+x\r\n", 8, 8, out, &used), -EPROTO);
	assert_int_equal(parse_split("*x\r\n", 4, 4, out, &used), -EPROTO);
	assert_int_equal(parse_split("*1\r\n$1\r\nab\r\n", 12, 12, out, &used), -EPROTO);
	assert_int_equal(parse_split("*1\r\n$1\r\na\r\n", 11, 11, out, &used), 1);
}

static void over_limit_request_is_skipped_then_parsing_goes_on(void **state)
{
	static const char in[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20\r\n01234567890123456789\r\n"
				 "*1\r\n$4\r\nPING\r\n";
	size_t len = sizeof in - 1, off, used, ac, need, cut;

	struct resp_parser p;
	struct resp_arg *av;

	(void)state;
	/* The skipped part may arrive one byte at a time or all at once. */
	for (cut = 1; cut <= 2; cut++) {
		memset(&p, 0, sizeof p);
		resp_parser_reset(&p);
		assert_int_equal(resp_parse(&p, in, len, 10, BIG, &av, &ac, &used, &need), -E2BIG);
		assert_true(p.discard);
		off = used;
		for (;;) {
			size_t n = cut == 1 ? 1 : len - off;
			int rc = resp_discard(&p, in + off, n, &used);

			off += used;
			if (rc == 1)
				break;
			assert_int_equal(used, n);
		}
		assert_memory_equal(in + off, "*1\r\n", 4);
		resp_parser_reset(&p);
		assert_int_equal(resp_parse(&p, in + off, len - off, 10, BIG, &av, &ac, &used, &need), 1);
		assert_int_equal(ac, 1);
		assert_memory_equal(av[0].p, "PING", 4);
		resp_parser_free(&p);
	}
}

static void malformed_line_is_dropped_then_parsing_goes_on(void **state)
{
	static const char *cases[] = { "*x\r\n", "*1\r\n$-7\r\n", "*2\r\n$3\r\nGET\r\n:1\r\n",
				       "*1\r\n$1\r\nab\r\n" };
	struct resp_parser p;
	struct resp_arg *av;
	size_t i, used, ac, need, off;
	char buf[128];

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len = (size_t)snprintf(buf, sizeof buf, "%sPING\r\n", cases[i]);

		memset(&p, 0, sizeof p);
		resp_parser_reset(&p);
		assert_int_equal(resp_parse(&p, buf, len, BIG, BIG, &av, &ac, &used, &need), -EPROTO);
		off = used;
		if (p.skipline) {
			assert_int_equal(resp_discard(&p, buf + off, len - off, &used), 1);
			off += used;
			resp_parser_reset(&p);
		}
		assert_int_equal(resp_parse(&p, buf + off, len - off, BIG, BIG, &av, &ac, &used, &need), 1);
		assert_int_equal(ac, 1);
		assert_memory_equal(av[0].p, "PING", 4);
		resp_parser_free(&p);
	}
	/* Absurd sizes are not worth skipping. */
	memset(&p, 0, sizeof p);
	resp_parser_reset(&p);
	assert_int_equal(resp_parse(&p, "*1\r\n$999999999999\r\n", 21, BIG, BIG, &av, &ac, &used, &need),
			 -EMSGSIZE);
	resp_parser_free(&p);
}

static void announced_args_are_not_preallocated(void **state)
{
	struct resp_parser p;
	struct resp_arg *av;
	size_t ac, used, need;

	(void)state;
	memset(&p, 0, sizeof p);
	resp_parser_reset(&p);
	assert_int_equal(resp_parse(&p, "*1000000\r\n", 10, BIG, BIG, &av, &ac, &used, &need), 0);
	assert_true(p.cap <= 1024);
	resp_parser_free(&p);
}

static void encoders_produce_resp2(void **state)
{
	struct ctl_buf b = { 0 };

	(void)state;
	resp_simple(&b, "OK");
	resp_error(&b, "ERR a\r\nb");
	resp_int(&b, -42);
	resp_bulk(&b, "xy", 2);
	resp_nil(&b);
	resp_array(&b, 0);
	assert_int_equal(b.len, strlen("+OK\r\n-ERR a  b\r\n:-42\r\n$2\r\nxy\r\n$-1\r\n*0\r\n"));
	assert_memory_equal(b.data, "+OK\r\n-ERR a  b\r\n:-42\r\n$2\r\nxy\r\n$-1\r\n*0\r\n", b.len);
	ctl_buf_free(&b);
}

static void base64_round_trips(void **state)
{
	unsigned char bytes[256];
	struct ctl_buf b = { 0 };
	void *dec;
	size_t n, i;

	(void)state;
	for (i = 0; i < sizeof bytes; i++)
		bytes[i] = (unsigned char)(255 - i);
	for (n = 0; n < 10; n++) {
		b.len = b.off = 0;
		assert_int_equal(ctl_b64_encode(&b, bytes, n), 0);
		assert_int_equal(b.len, ctl_b64_enclen(n));
		assert_int_equal(ctl_b64_decode(b.data, b.len, &dec, &i), 0);
		assert_int_equal(i, n);
		assert_memory_equal(dec, bytes, n);
		free(dec);
	}
	b.len = 0;
	ctl_b64_encode(&b, "foobar", 6);
	assert_memory_equal(b.data, "Zm9vYmFy", 8);
	assert_int_equal(ctl_b64_decode("Zm9v!mFy", 8, &dec, &n), -EINVAL);
	assert_int_equal(ctl_b64_decode("Zm9", 3, &dec, &n), -EINVAL);
	assert_int_equal(ctl_b64_decode("Zg=a", 4, &dec, &n), -EINVAL);
	ctl_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(multibulk_parses_at_every_split),
		cmocka_unit_test(inline_commands_split_like_redis),
		cmocka_unit_test(malformed_headers_are_refused),
		cmocka_unit_test(announced_args_are_not_preallocated),
		cmocka_unit_test(over_limit_request_is_skipped_then_parsing_goes_on),
		cmocka_unit_test(malformed_line_is_dropped_then_parsing_goes_on),
		cmocka_unit_test(encoders_produce_resp2),
		cmocka_unit_test(base64_round_trips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
