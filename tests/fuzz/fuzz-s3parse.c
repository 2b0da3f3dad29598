/* libFuzzer target: what ferry-convert reads from S3 and from the AWS
 * CLI's files: XML replies (s3_xml_get), INI files (s3_ini_get), and
 * s3:// URLs. Whatever is found fits, is NUL-terminated, and a parsed URL
 * formats back to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/s3parse.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	char out[256], why[200], back[S3_KEY_MAX + 80], enc[S3_KEY_MAX * 3 + 1];
	struct s3_target t;
	char *s;
	int n;

	static const char *tags[] = { "UploadId", "Code", "Message", "ETag" };
	for (size_t i = 0; i < sizeof tags / sizeof *tags; i++) {
		n = s3_xml_get(text, size, tags[i], out, sizeof out);
		CHECK(n < (int)sizeof out);
		if (n >= 0)
			CHECK(strlen(out) == (size_t)n);
	}
	if (s3_ini_get(text, size, "default", "aws_access_key_id", out,
		       sizeof out) == 0)
		CHECK(strlen(out) < sizeof out && !strchr(out, '\n'));
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (s3_url_parse(s, &t, why, sizeof why) == 0) {
		CHECK(strlen(t.bucket) >= 3 && strlen(t.key) >= 1);
		snprintf(back, sizeof back, "s3://%s/%s", t.bucket, t.key);
		CHECK(strcmp(back, s) == 0);
		n = s3_uri_encode(t.key, true, enc, sizeof enc);
		CHECK(n >= (int)strlen(t.key));
	} else {
		CHECK(why[0]);
	}
	free(s);
	return 0;
}
