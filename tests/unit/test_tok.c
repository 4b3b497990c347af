/*
 * test_tok.c — tokenizer and stemmer cases, most of them read from
 * tests/data/search/tokenize.tsv ("input<TAB>pos:stem pos:stem ...").
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "search/tok.h"

struct outbuf {
	char   s[4096];
	size_t n;
};

static int add(void *arg, const struct tok *t)
{
	struct outbuf *o = arg;
	o->n += (size_t)snprintf(o->s + o->n, sizeof(o->s) - o->n, "%s%u:%.*s",
				 o->n ? " " : "", t->pos, (int)t->slen, t->stem);
	return 0;
}

static void tokenize(const char *in, size_t len, struct outbuf *o)
{
	o->n = 0;
	o->s[0] = 0;
	assert_int_equal(tok_run(in, len, add, o), 0);
}

/* Decodes \t, \n, \\ and \xHH so that the data file can hold any byte. */
static size_t unescape(const char *in, char *out)
{
	size_t n = 0;
	unsigned v;

	while (*in) {
		if (in[0] == '\\' && in[1] == 'x' && sscanf(in + 2, "%2x", &v) == 1) {
			out[n++] = (char)v;
			in += 4;
		} else if (in[0] == '\\' && in[1] == 't') {
			out[n++] = '\t';
			in += 2;
		} else if (in[0] == '\\' && in[1] == '\\') {
			out[n++] = '\\';
			in += 2;
		} else {
			out[n++] = *in++;
		}
	}
	out[n] = 0;
	return n;
}

static void data_file_cases_tokenize_as_listed(void **state)
{
	const char *root = getenv("KVFS_SOURCE_ROOT");
	char path[4096], *line = NULL, in[4096], *tab, *nl;
	struct outbuf o;
	size_t cap = 0, len, cases = 0, bad = 0;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/tests/data/search/tokenize.tsv", root ? root : ".");
	f = fopen(path, "r");
	assert_non_null(f);
	while (getline(&line, &cap, f) > 0) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		tab = strchr(line, '\t');
		assert_non_null(tab);
		*tab = 0;
		len = unescape(line, in);
		tokenize(in, len, &o);
		cases++;
		if (strcmp(o.s, tab + 1)) {
			bad++;
			fprintf(stderr, "case %zu: \"%s\"\n  want: %s\n  got:  %s\n", cases, line, tab + 1, o.s);
		}
	}
	free(line);
	fclose(f);
	assert_true(cases >= 20);
	assert_int_equal(bad, 0);
}

static void stop_words_are_recognised_and_others_not(void **state)
{
	(void)state;
	assert_true(tok_is_stopword("the", 3));
	assert_true(tok_is_stopword("a", 1));
	assert_true(tok_is_stopword("yourselves", 10));
	assert_true(tok_is_stopword("about", 5));
	assert_false(tok_is_stopword("zebra", 5));
	assert_false(tok_is_stopword("th", 2));
	assert_false(tok_is_stopword("", 0));
}

static void utf8_validation_rejects_malformed_sequences(void **state)
{
	(void)state;
	assert_true(tok_utf8_valid("plain", 5));
	assert_true(tok_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
	assert_false(tok_utf8_valid("\xc3", 1));             /* truncated */
	assert_false(tok_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
	assert_false(tok_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
	assert_false(tok_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
	assert_false(tok_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	assert_false(tok_utf8_valid("\xff", 1));
	assert_false(tok_utf8_valid("ok\x80", 3));           /* stray continuation */
}

static void invalid_bytes_split_words_without_crashing(void **state)
{
	struct outbuf o;

	(void)state;
	tokenize("alpha\xff" "beta\xc3", 11, &o);
	assert_string_equal(o.s, "0:alpha 1:beta");
}

static int stop_after_one(void *arg, const struct tok *t)
{
	(void)t;
	(*(int *)arg)++;
	return 7;
}

static void callback_return_value_stops_the_run(void **state)
{
	int calls = 0;

	(void)state;
	assert_int_equal(tok_run("one two three", 13, stop_after_one, &calls), 7);
	assert_int_equal(calls, 1);
}

static void long_text_positions_keep_counting(void **state)
{
	static char text[20000];
	struct outbuf o;
	size_t i, n = 0;

	(void)state;
	for (i = 0; i < 2000; i++)
		n += (size_t)sprintf(text + n, "the ");
	n += (size_t)sprintf(text + n, "zebra");
	tokenize(text, n, &o);
	assert_string_equal(o.s, "2000:zebra");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(data_file_cases_tokenize_as_listed),
		cmocka_unit_test(stop_words_are_recognised_and_others_not),
		cmocka_unit_test(utf8_validation_rejects_malformed_sequences),
		cmocka_unit_test(invalid_bytes_split_words_without_crashing),
		cmocka_unit_test(callback_return_value_stops_the_run),
		cmocka_unit_test(long_text_positions_keep_counting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
