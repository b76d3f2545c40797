/* A small unit-test harness: TEST() functions, CHECK macros, and a closing count line. */
#ifndef ENCLAVER_TEST_HARNESS_H
#define ENCLAVER_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

extern int test_failures;

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			test_failures++;                                              \
		}                                                                     \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                            \
	do {                                                                          \
		long long a_ = (long long)(a), b_ = (long long)(b);                   \
		if (a_ != b_) {                                                       \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_); \
			test_failures++;                                              \
		}                                                                     \
	} while (0)

#define CHECK_STR(a, b)                                                               \
	do {                                                                          \
		const char *a_ = (a), *b_ = (b);                                      \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                              \
			fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
				a_ ? a_ : "(null)", b_ ? b_ : "(null)");              \
			test_failures++;                                              \
		}                                                                     \
	} while (0)

/* Path of tests/data/vectors and tests/data, given by the build. */
const char *test_vectors_dir(void);
const char *test_data_dir(void);
/* Reads a file into a malloc'd buffer or aborts the test program. */
unsigned char *test_read_file(const char *dir, const char *name, size_t *len);

int test_main(const struct test_case *cases, size_t n, int argc, char **argv);

#define TEST_MAIN(...)                                                               \
	int main(int argc, char **argv)                                               \
	{                                                                             \
		static const struct test_case cases_[] = { __VA_ARGS__ };             \
		return test_main(cases_, sizeof(cases_) / sizeof(cases_[0]), argc, argv); \
	}
#define T(fn) { #fn, fn }

#endif
