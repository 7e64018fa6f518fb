/*
 * replay.c - run a harness over saved inputs, without libFuzzer.
 *
 * Linked with one fuzz_*.c by make check, so that the seed corpus and every
 * input that once broke an invariant run on each build, with whatever
 * compiler and sanitizers the build uses.
 *
 *   check_fuzz_NAME [FILE|DIR]...
 *
 * With no argument it reads $NETTCPD_SRCDIR/fuzz/corpus/NAME and
 * $NETTCPD_SRCDIR/fuzz/regress/NAME (NETTCPD_SRCDIR defaults to ".").
 * A broken invariant aborts; an unreadable input is a failure too.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#ifndef FUZZ_NAME
#error "FUZZ_NAME must name the harness"
#endif

static unsigned long inputs, failures;

static void
replay_file(const char *file)
{
	FILE *f = fopen(file, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;

	if (f == NULL) {
		printf("FAIL %s: %s\n", file, strerror(errno));
		failures++;
		return;
	}
	for (;;) {
		size_t n;

		if (len == cap) {
			uint8_t *bigger = realloc(buf, cap ? cap * 2 : 4096);

			if (bigger == NULL) {
				printf("FAIL %s: out of memory\n", file);
				failures++;
				goto out;
			}
			buf = bigger;
			cap = cap ? cap * 2 : 4096;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		printf("FAIL %s: read error\n", file);
		failures++;
		goto out;
	}
	/* libFuzzer hands over an exactly sized copy; do the same */
	{
		uint8_t *exact = malloc(len ? len : 1);

		if (exact == NULL) {
			printf("FAIL %s: out of memory\n", file);
			failures++;
			goto out;
		}
		memcpy(exact, buf, len);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
	}
	inputs++;
out:
	free(buf);
	fclose(f);
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
replay_path(const char *path, int must_exist)
{
	struct stat st;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;
	DIR *d;

	if (stat(path, &st) < 0) {
		if (must_exist) {
			printf("FAIL %s: %s\n", path, strerror(errno));
			failures++;
		}
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		replay_file(path);
		return;
	}
	d = opendir(path);
	if (d == NULL) {
		printf("FAIL %s: %s\n", path, strerror(errno));
		failures++;
		return;
	}
	while ((e = readdir(d)) != NULL) {
		char **more;

		if (e->d_name[0] == '.')
			continue;
		more = realloc(names, (n + 1) * sizeof(*names));
		if (more == NULL)
			break;
		names = more;
		names[n] = malloc(strlen(path) + strlen(e->d_name) + 2);
		if (names[n] == NULL)
			break;
		sprintf(names[n], "%s/%s", path, e->d_name);
		n++;
	}
	closedir(d);
	/* a fixed order, so a failure names the same input every time */
	qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		replay_path(names[i], 1);
		free(names[i]);
	}
	free(names);
}

int
main(int argc, char **argv)
{
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			replay_path(argv[i], 1);
	} else {
		const char *srcdir = getenv("NETTCPD_SRCDIR");
		char dir[PATH_MAX];

		if (srcdir == NULL || srcdir[0] == '\0')
			srcdir = ".";
		snprintf(dir, sizeof(dir), "%s/fuzz/corpus/%s", srcdir, FUZZ_NAME);
		replay_path(dir, 1);
		snprintf(dir, sizeof(dir), "%s/fuzz/regress/%s", srcdir, FUZZ_NAME);
		replay_path(dir, 0);
	}
	if (inputs == 0 && failures == 0) {
		printf("FAIL no input found\n");
		failures++;
	}
	printf("check_fuzz_%s: %lu passed, %lu failed\n", FUZZ_NAME,
	    inputs, failures);
	return failures ? 1 : 0;
}
