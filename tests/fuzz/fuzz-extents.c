/* libFuzzer target: the extent map a server sends (GET .../extents).
 * Whatever the bytes, the parser either refuses them or yields a map whose
 * extents are sorted, disjoint, non-empty, inside the disk, and whose
 * data_bytes add up; and writing it back then parsing gives the same map. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/extents.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_extents m, back;
	char why[200];
	uint64_t sum = 0, prev_end = 0;
	char *text;

	if (ferry_extents_from_json((const char *)data, size, UINT64_MAX, &m,
				    why, sizeof why) < 0) {
		CHECK(m.v == NULL && m.n == 0);
		return 0;
	}
	for (size_t i = 0; i < m.n; i++) {
		CHECK(m.v[i].len > 0);
		CHECK(i == 0 || m.v[i].off > prev_end);	/* merged */
		CHECK(m.v[i].off >= prev_end);
		CHECK(m.v[i].off + m.v[i].len <= m.size);
		prev_end = m.v[i].off + m.v[i].len;
		sum += m.v[i].len;
	}
	CHECK(sum == m.data_bytes);
	CHECK(ferry_extents_data_in(&m, 0, m.size) == sum);

	text = ferry_extents_to_json(&m);
	CHECK(text);
	CHECK(ferry_extents_from_json(text, strlen(text), m.size, &back, why,
				       sizeof why) == 0);
	CHECK(back.n == m.n && back.data_bytes == m.data_bytes);
	for (size_t i = 0; i < m.n; i++)
		CHECK(back.v[i].off == m.v[i].off &&
		       back.v[i].len == m.v[i].len);
	free(text);
	ferry_extents_free(&back);
	ferry_extents_free(&m);
	return 0;
}
