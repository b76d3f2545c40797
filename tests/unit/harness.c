/* Unit-test runner: runs each case, reports failures by name, prints "N passed, N failed". */
#include "harness.h"

int test_failures;

const char *test_vectors_dir(void)
{
	const char *d = getenv("ENCLAVER_VECTORS");

	return d ? d : VECTORS_DIR;
}

const char *test_data_dir(void)
{
	const char *d = getenv("ENCLAVER_TEST_DATA");

	return d ? d : TEST_DATA_DIR;
}

unsigned char *test_read_file(const char *dir, const char *name, size_t *len)
{
	char path[4096];
	FILE *f;
	unsigned char *data;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "cannot open test input %s\n", path);
		exit(2);
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	data = malloc((size_t)n + 1);
	if (!data || fread(data, 1, (size_t)n, f) != (size_t)n)
		exit(2);
	fclose(f);
	data[n] = 0;
	*len = (size_t)n;
	return data;
}

int test_main(const struct test_case *cases, size_t n, int argc, char **argv)
{
	int passed = 0, failed = 0;

	for (size_t i = 0; i < n; i++) {
		int before = test_failures;

		if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
			continue;
		cases[i].fn();
		if (test_failures == before) {
			passed++;
		} else {
			failed++;
			fprintf(stderr, "FAIL %s\n", cases[i].name);
		}
	}
	printf("%s: %d passed, %d failed\n", argv[0], passed, failed);
	return failed ? 1 : 0;
}
