/* odyn's log ring and the host's status-line parser. */
#include "harness.h"

#include <signal.h>

#include "enclave/console.h"
#include "host/console.h"

static void test_ring_keeps_the_newest(void)
{
	static struct log_ring r;
	static uint8_t big[3 * CONSOLE_LOG_CAPACITY], out[CONSOLE_LOG_CAPACITY + 10];
	uint64_t cursor = 0;
	size_t n;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i % 251);
	log_ring_write(&r, "early", 5);
	n = log_ring_read(&r, &cursor, out, sizeof(out));
	CHECK(n == 5 && memcmp(out, "early", 5) == 0);
	/* three capacities in pieces: a late reader gets exactly the last 128 KiB, in order */
	for (size_t i = 0; i < sizeof(big); i += 1000)
		log_ring_write(&r, big + i, sizeof(big) - i < 1000 ? sizeof(big) - i : 1000);
	cursor = 0;
	n = log_ring_read(&r, &cursor, out, sizeof(out));
	CHECK_EQ_INT(n, CONSOLE_LOG_CAPACITY);
	CHECK(memcmp(out, big + sizeof(big) - CONSOLE_LOG_CAPACITY, CONSOLE_LOG_CAPACITY) == 0);
	CHECK_EQ_INT(cursor, r.total);
	/* one write larger than the ring */
	log_ring_write(&r, big, sizeof(big));
	cursor = log_ring_oldest(&r);
	n = log_ring_read(&r, &cursor, out, sizeof(out));
	CHECK(n == CONSOLE_LOG_CAPACITY && memcmp(out, big + sizeof(big) - CONSOLE_LOG_CAPACITY, n) == 0);
}

static void test_status_lines(void)
{
	struct app_status st;
	struct err err = { 0 };
	const char *l;

	l = "{ \"status\": \"exited\", \"code\": 3 }";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK(st.state == APP_EXITED && st.code == 3 && app_status_exit_code(&st) == 3);
	l = "{ \"status\": \"exited\", \"code\": 300 }";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK_EQ_INT(app_status_exit_code(&st), 300 & 0xff);
	/* upstream odyn writes a name, upstream's host wanted a number: both are accepted */
	l = "{ \"status\": \"signaled\", \"signal\": \"SIGTERM\" }";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK(st.state == APP_SIGNALED && st.signal == SIGTERM && app_status_exit_code(&st) == 107);
	l = "{\"status\":\"signaled\",\"signal\":9}";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK_EQ_INT(st.signal, 9);
	l = "{ \"status\": \"fatal\", \"error\": \"bad \\\"quoted\\\"\\nthing\" }";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK(st.state == APP_FATAL && app_status_exit_code(&st) == 108);
	CHECK_STR(st.error, "bad \"quoted\"\nthing");
	l = "{ \"status\": \"running\" }";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK(st.state == APP_RUNNING);
	l = "{ \"status\": \"fatal\", \"error\": \"unescaped \" quote\" }";
	CHECK(app_status_parse(l, strlen(l), &st, &err) < 0);
	l = "{ \"status\": \"weird\" }";
	CHECK(app_status_parse(l, strlen(l), &st, &err) < 0);
}

TEST_MAIN(T(test_ring_keeps_the_newest), T(test_status_lines))
