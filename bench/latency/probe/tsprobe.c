/*
 * tsprobe: the "script" of netevd's latency benchmark (bench/latency).
 *
 * Its first action in main is clock_gettime(CLOCK_MONOTONIC); only then
 * does it format one line and write it to the FIFO whose path is compiled
 * in (-DOUT="\"/path\""): netevd passes scripts no arguments, and builds
 * their environment from scratch, so the path cannot come from outside.
 *
 *   line: <CLOCK_MONOTONIC ns> <ppid> <argv[0]>\n
 *
 * The harness holds the FIFO open for reading and writing, so open(2)
 * never blocks and the write (under PIPE_BUF) arrives whole. The program
 * ignores stdin and exits 0.
 */
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#ifndef OUT
#error "compile with -DOUT='\"/path/to/fifo\"'"
#endif

int main(int argc, char **argv)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);

	char line[512];
	int n = snprintf(line, sizeof line, "%lld %d %s\n",
			 (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec,
			 (int)getppid(), argc > 0 ? argv[0] : "?");
	if (n < 0 || n >= (int)sizeof line)
		return 2;
	int fd = open(OUT, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return 3;
	if (write(fd, line, n) != n)
		return 4;
	return 0;
}
