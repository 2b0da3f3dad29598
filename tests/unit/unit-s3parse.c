/* S3's pure parts: s3:// URLs good and bad, INI lookups as the AWS CLI's
 * files have them, the XML of S3's replies with entities, URI encoding. */
#include <errno.h>
#include <string.h>

#include "common/s3parse.h"
#include "check.h"

int
main(void)
{
	static const char *bad[] = {
		"", "s3:/b/k", "https://bkt/k", "s3://bk/k", "s3://Bucket/k",
		"s3://-bkt/k", "s3://bkt-/k", "s3://bkt", "s3://bkt/",
		"s3://bkt_x/k", "s3://bkt/a\nb",
	};
	static const char ini[] =
		"# the AWS CLI's credentials\n"
		"[default]\r\n"
		"aws_access_key_id = AKIADEFAULT\n"
		"aws_secret_access_key=s3cr/et+=\n"
		"  [ prod ]  \n"
		"; a comment\n"
		"aws_access_key_id\t=\tAKIAPROD  \n"
		"[profile dev]\n"
		"region = eu-west-1\n";
	static const char xml[] =
		"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>"
		"<Message>a &amp; b &lt;c&gt; &quot;d&quot; &#65;&#x263a;</Message>"
		"<Empty/><Nest><Code>x</Code></Nest><Open>no end</Error>";
	struct s3_target t;
	char why[200], out[64];

	CHECK(s3_url_parse("s3://ferry-test/images/web01 disk0.qcow2", &t,
			   why, sizeof why) == 0);
	CHECK(strcmp(t.bucket, "ferry-test") == 0 &&
	      strcmp(t.key, "images/web01 disk0.qcow2") == 0);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		why[0] = '\0';
		CHECK(s3_url_parse(bad[i], &t, why, sizeof why) == -EINVAL);
		CHECK(why[0] != '\0');
	}

	CHECK(s3_ini_get(ini, strlen(ini), "default", "aws_access_key_id", out,
			 sizeof out) == 0 && strcmp(out, "AKIADEFAULT") == 0);
	CHECK(s3_ini_get(ini, strlen(ini), "default", "aws_secret_access_key",
			 out, sizeof out) == 0 && strcmp(out, "s3cr/et+=") == 0);
	CHECK(s3_ini_get(ini, strlen(ini), "prod", "aws_access_key_id", out,
			 sizeof out) == 0 && strcmp(out, "AKIAPROD") == 0);
	CHECK(s3_ini_get(ini, strlen(ini), "profile dev", "region", out,
			 sizeof out) == 0 && strcmp(out, "eu-west-1") == 0);
	CHECK(s3_ini_get(ini, strlen(ini), "prod", "region", out,
			 sizeof out) == -ENOENT);
	CHECK(s3_ini_get(ini, strlen(ini), "default", "aws_access_key_id", out,
			 5) == -ENAMETOOLONG);

	CHECK(s3_xml_get(xml, strlen(xml), "Code", out, sizeof out) == 12 &&
	      strcmp(out, "NoSuchBucket") == 0);
	CHECK(s3_xml_get(xml, strlen(xml), "Message", out, sizeof out) > 0 &&
	      strcmp(out, "a & b <c> \"d\" A\xe2\x98\xba") == 0);
	CHECK(s3_xml_get(xml, strlen(xml), "Empty", out, sizeof out) == 0 &&
	      out[0] == '\0');
	CHECK(s3_xml_get(xml, strlen(xml), "Nest", out, sizeof out) == -EPROTO);
	CHECK(s3_xml_get(xml, strlen(xml), "Open", out, sizeof out) == -EPROTO);
	CHECK(s3_xml_get(xml, strlen(xml), "UploadId", out, sizeof out) == -ENOENT);
	CHECK(s3_xml_get(xml, strlen(xml), "Code", out, 5) == -ENAMETOOLONG);
	CHECK(s3_xml_get("<M>&bogus;</M>", 14, "M", out, sizeof out) == -EPROTO);

	CHECK(s3_uri_encode("a b/c~d+é", true, out, sizeof out) > 0 &&
	      strcmp(out, "a%20b/c~d%2B%C3%A9") == 0);
	CHECK(s3_uri_encode("2~x/y=", false, out, sizeof out) > 0 &&
	      strcmp(out, "2~x%2Fy%3D") == 0);
	CHECK(s3_uri_encode("abcdef", false, out, 4) == -ENAMETOOLONG);
	/* AWS's own example (S3 API reference, "Signature Calculations for
	 * the Authorization Header", GET Object): the same signature. */
	{
		static const char empty[] = "e3b0c44298fc1c149afbf4c8996fb924"
					    "27ae41e4649b934ca495991b7852b855";
		const struct s3_header h[] = {
			{ "x-amz-date", "20130524T000000Z" },
			{ "range", "bytes=0-9" },
			{ "host", "examplebucket.s3.amazonaws.com" },
			{ "x-amz-content-sha256", empty },
		};
		char auth[512];

		CHECK(s3_sign("AKIAIOSFODNN7EXAMPLE",
			      "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
			      "us-east-1", "20130524T000000Z", "GET",
			      "/test.txt", "", h, 4, empty, auth,
			      sizeof auth) > 0);
		CHECK(strcmp(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7"
			     "EXAMPLE/20130524/us-east-1/s3/aws4_request, "
			     "SignedHeaders=host;range;x-amz-content-sha256;"
			     "x-amz-date, Signature=f0e8bdb87c964420e857bd35b5"
			     "d6ed310bd44f0170aba48dd91039c6036bdb41") == 0);
		CHECK(s3_sign("A", "S", "us-east-1", "2013", "GET", "/", "", h,
			      4, empty, auth, sizeof auth) == -EINVAL);
	}
	return check_result("unit-s3parse");
}
