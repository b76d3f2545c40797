/* The accelerated CRC-32 agrees with zlib on every length, alignment and split. */
#include "harness.h"

#include <zlib.h>

#include "base/crc32.h"

static void test_check_value(void)
{
	CHECK_EQ_INT(crc32_update(0, "123456789", 9), 0xCBF43926);
	CHECK_EQ_INT(crc32_update(0, NULL, 0), 0);
}

static void test_agrees_with_zlib(void)
{
	static uint8_t buf[70000];
	unsigned seed = 7;
	int bad = 0;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)((seed = seed * 1103515245 + 12345) >> 16);
	for (size_t len = 0; len < 600; len++)
		for (size_t off = 0; off < 3; off++)
			bad += crc32_update(0x12345678, buf + off, len) != (uint32_t)crc32_z(0x12345678, buf + off, len);
	for (size_t len = 1000; len < sizeof(buf) - 16; len += 4099) {
		uint32_t split = crc32_update(crc32_update(0, buf, len / 3), buf + len / 3, len - len / 3);

		bad += split != (uint32_t)crc32_z(0, buf, len);
		bad += crc32_update(0, buf + 5, len) != (uint32_t)crc32_z(0, buf + 5, len);
	}
	CHECK_EQ_INT(bad, 0);
}

TEST_MAIN(T(test_check_value), T(test_agrees_with_zlib))
