/*
 * json.c - a small, strict JSON reader and writer for one row object.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

struct parser {
	const char *p, *end, *start;
	char *err;
	size_t errlen;
	int oom;
};

/* Record the first failure with its byte offset; returns -EINVAL. */
static int fail(struct parser *ps, const char *what)
{
	if (ps->err && ps->errlen && !ps->err[0])
		snprintf(ps->err, ps->errlen, "%s at byte %zu", what,
			 (size_t)(ps->p - ps->start));
	return -EINVAL;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
				   *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

static void put_utf8(struct vd_buf *b, unsigned int cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = cp, n = 1;
	} else if (cp < 0x800) {
		u[0] = 0xc0 | cp >> 6, u[1] = 0x80 | (cp & 0x3f), n = 2;
	} else if (cp < 0x10000) {
		u[0] = 0xe0 | cp >> 12, u[1] = 0x80 | ((cp >> 6) & 0x3f);
		u[2] = 0x80 | (cp & 0x3f), n = 3;
	} else {
		u[0] = 0xf0 | cp >> 18, u[1] = 0x80 | ((cp >> 12) & 0x3f);
		u[2] = 0x80 | ((cp >> 6) & 0x3f), u[3] = 0x80 | (cp & 0x3f);
		n = 4;
	}
	vd_buf_add(b, u, n);
}

/* Four hex digits at p, or -1. */
static int hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* Parse a string at ps->p (on the opening quote) into a new NUL-terminated
 * buffer *out of *outlen bytes. */
static int parse_string(struct parser *ps, char **out, size_t *outlen)
{
	struct vd_buf b = {0};

	ps->p++;
	for (;;) {
		unsigned char c;

		if (ps->p >= ps->end) {
			vd_buf_free(&b);
			return fail(ps, "unterminated string");
		}
		c = (unsigned char)*ps->p;
		if (c == '"') {
			ps->p++;
			break;
		}
		if (c < 0x20) {
			vd_buf_free(&b);
			return fail(ps, "control character in string");
		}
		if (c == '\\') {
			char e;
			int cp, lo;

			if (ps->end - ps->p < 2) {
				vd_buf_free(&b);
				return fail(ps, "unterminated string");
			}
			e = ps->p[1];
			ps->p += 2;
			switch (e) {
			case '"':
				vd_buf_add(&b, "\"", 1);
				continue;
			case '\\':
				vd_buf_add(&b, "\\", 1);
				continue;
			case '/':
				vd_buf_add(&b, "/", 1);
				continue;
			case 'b':
				vd_buf_add(&b, "\b", 1);
				continue;
			case 'f':
				vd_buf_add(&b, "\f", 1);
				continue;
			case 'n':
				vd_buf_add(&b, "\n", 1);
				continue;
			case 'r':
				vd_buf_add(&b, "\r", 1);
				continue;
			case 't':
				vd_buf_add(&b, "\t", 1);
				continue;
			case 'u':
				break;
			default:
				ps->p -= 2;
				vd_buf_free(&b);
				return fail(ps, "bad escape in string");
			}
			cp = ps->end - ps->p >= 4 ? hex4(ps->p) : -1;
			if (cp < 0) {
				vd_buf_free(&b);
				return fail(ps, "bad \\u escape");
			}
			ps->p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				lo = ps->end - ps->p >= 6 && ps->p[0] == '\\' &&
						     ps->p[1] == 'u'
					     ? hex4(ps->p + 2)
					     : -1;
				if (lo < 0xdc00 || lo > 0xdfff) {
					vd_buf_free(&b);
					return fail(
						ps,
						"lone surrogate in \\u escape");
				}
				ps->p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				vd_buf_free(&b);
				return fail(ps, "lone surrogate in \\u escape");
			}
			put_utf8(&b, (unsigned int)cp);
			continue;
		}
		{
			size_t n = utf8_len((const unsigned char *)ps->p,
					    (size_t)(ps->end - ps->p));

			if (!n) {
				vd_buf_free(&b);
				return fail(ps, "invalid UTF-8 in string");
			}
			vd_buf_add(&b, ps->p, n);
			ps->p += n;
		}
	}
	vd_buf_add(&b, "", 1);
	if (b.oom) {
		vd_buf_free(&b);
		ps->oom = 1;
		return -ENOMEM;
	}
	*out = b.p;
	*outlen = b.len - 1;
	return 0;
}

/* Parse a number per the JSON grammar: an integer when it has no fraction
 * or exponent and fits 64 bits, a real otherwise. */
static int parse_number(struct parser *ps, struct vd_json_value *v)
{
	const char *s = ps->p, *p = ps->p;
	char tmp[64];
	int is_int = 1;

	if (p < ps->end && *p == '-')
		p++;
	if (p < ps->end && *p == '0') {
		p++;
	} else if (p < ps->end && *p >= '1' && *p <= '9') {
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	} else {
		return fail(ps, "bad number");
	}
	if (p < ps->end && *p == '.') {
		is_int = 0;
		p++;
		if (p >= ps->end || *p < '0' || *p > '9')
			return fail(ps, "bad number");
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < ps->end && (*p == 'e' || *p == 'E')) {
		is_int = 0;
		p++;
		if (p < ps->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= ps->end || *p < '0' || *p > '9')
			return fail(ps, "bad number");
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	if ((size_t)(p - s) >= sizeof(tmp))
		return fail(ps, "number too long");
	memcpy(tmp, s, (size_t)(p - s));
	tmp[p - s] = 0;
	ps->p = p;
	if (is_int) {
		errno = 0;
		v->i = strtoll(tmp, NULL, 10);
		if (errno == 0) {
			v->type = VD_JSON_INT;
			return 0;
		}
	}
	v->type = VD_JSON_REAL;
	v->r = strtod(tmp, NULL);
	return 0;
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode base64 text s in place (padding required, no white space).
 * Returns the decoded length or -1. */
static long base64_decode(char *s, size_t n)
{
	size_t o = 0;

	if (n % 4)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int a = b64val(s[i]), b = b64val(s[i + 1]);
		int c = s[i + 2] == '=' ? -2 : b64val(s[i + 2]);
		int d = s[i + 3] == '=' ? -2 : b64val(s[i + 3]);
		int last = i + 4 == n;

		if (a < 0 || b < 0 || c == -1 || d == -1 ||
		    (!last && (c < 0 || d < 0)) || (c == -2 && d != -2))
			return -1;
		s[o++] = (char)(a << 2 | b >> 4);
		if (c >= 0)
			s[o++] = (char)((b & 15) << 4 | c >> 2);
		if (d >= 0)
			s[o++] = (char)((c & 3) << 6 | d);
	}
	s[o] = 0;
	return (long)o;
}

/* Parse {"$base64": "..."} at ps->p (on the brace) into a blob. */
static int parse_blob(struct parser *ps, struct vd_json_value *v)
{
	char *name = NULL;
	size_t nlen;
	long n;
	int r;

	ps->p++;
	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != '"')
		return fail(ps, "nested objects are not values (only "
				"{\"$base64\": \"...\"})");
	r = parse_string(ps, &name, &nlen);
	if (r)
		return r;
	r = strcmp(name, "$base64");
	free(name);
	if (r)
		return fail(ps, "nested objects are not values (only "
				"{\"$base64\": \"...\"})");
	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != ':')
		return fail(ps, "expected ':'");
	ps->p++;
	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != '"')
		return fail(ps, "$base64 wants a string");
	r = parse_string(ps, &v->s, &v->len);
	if (r)
		return r;
	n = base64_decode(v->s, v->len);
	if (n < 0) {
		free(v->s);
		v->s = NULL;
		return fail(ps, "bad base64");
	}
	v->len = (size_t)n;
	v->type = VD_JSON_BLOB;
	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != '}') {
		free(v->s);
		v->s = NULL;
		return fail(ps, "expected '}' after $base64");
	}
	ps->p++;
	return 0;
}

static int match_word(struct parser *ps, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n))
		return 0;
	ps->p += n;
	return 1;
}

static int parse_value(struct parser *ps, struct vd_json_value *v)
{
	memset(v, 0, sizeof(*v));
	if (ps->p >= ps->end)
		return fail(ps, "expected a value");
	switch (*ps->p) {
	case '"':
		v->type = VD_JSON_TEXT;
		return parse_string(ps, &v->s, &v->len);
	case '{':
		return parse_blob(ps, v);
	case '[':
		return fail(ps, "arrays are not column values");
	case 'n':
		if (match_word(ps, "null"))
			return v->type = VD_JSON_NULL, 0;
		break;
	case 't':
		if (match_word(ps, "true"))
			return v->type = VD_JSON_INT, v->i = 1, 0;
		break;
	case 'f':
		if (match_word(ps, "false"))
			return v->type = VD_JSON_INT, v->i = 0, 0;
		break;
	default:
		return parse_number(ps, v);
	}
	return fail(ps, "expected a value");
}

void vd_json_object_free(struct vd_json_object *o)
{
	for (size_t i = 0; i < o->n; i++) {
		free(o->m[i].name);
		free(o->m[i].v.s);
	}
	free(o->m);
	o->m = NULL;
	o->n = 0;
}

/* Add one "name": value member to o, parsed at ps->p. */
static int parse_member(struct parser *ps, struct vd_json_object *o)
{
	struct vd_json_member *m;
	char *name;
	size_t nlen;
	int r;

	if (ps->p >= ps->end || *ps->p != '"')
		return fail(ps, "expected a member name");
	r = parse_string(ps, &name, &nlen);
	if (r)
		return r;
	if (strlen(name) != nlen) {
		free(name);
		return fail(ps, "NUL in member name");
	}
	for (size_t i = 0; i < o->n; i++) {
		if (!strcmp(o->m[i].name, name)) {
			free(name);
			return fail(ps, "duplicate member name");
		}
	}
	m = realloc(o->m, (o->n + 1) * sizeof(*o->m));
	if (!m) {
		free(name);
		ps->oom = 1;
		return -ENOMEM;
	}
	o->m = m;
	m = &o->m[o->n];
	m->name = name;
	memset(&m->v, 0, sizeof(m->v));
	o->n++;
	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != ':')
		return fail(ps, "expected ':'");
	ps->p++;
	skip_ws(ps);
	return parse_value(ps, &m->v);
}

int vd_json_parse(const char *text, size_t len, struct vd_json_object *out,
		  char *err, size_t errlen)
{
	struct parser ps = {text, text + len, text, err, errlen, 0};
	int r = 0;

	out->m = NULL;
	out->n = 0;
	if (err && errlen)
		err[0] = 0;
	skip_ws(&ps);
	if (ps.p >= ps.end || *ps.p != '{') {
		r = fail(&ps, "expected a JSON object");
		goto out;
	}
	ps.p++;
	skip_ws(&ps);
	if (ps.p < ps.end && *ps.p == '}') {
		ps.p++;
	} else {
		for (;;) {
			r = parse_member(&ps, out);
			if (r)
				goto out;
			skip_ws(&ps);
			if (ps.p < ps.end && *ps.p == ',') {
				ps.p++;
				skip_ws(&ps);
				continue;
			}
			if (ps.p < ps.end && *ps.p == '}') {
				ps.p++;
				break;
			}
			r = fail(&ps, "expected ',' or '}'");
			goto out;
		}
	}
	skip_ws(&ps);
	if (ps.p != ps.end)
		r = fail(&ps, "text after the object");
out:
	if (r) {
		vd_json_object_free(out);
		if (ps.oom)
			r = -ENOMEM;
	}
	return r;
}

void vd_json_put_string(struct vd_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0;

	vd_buf_add(b, "\"", 1);
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		size_t len;

		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};

			vd_buf_add(b, e, 2);
			i++;
		} else if (c == '\n') {
			vd_buf_add(b, "\\n", 2), i++;
		} else if (c == '\t') {
			vd_buf_add(b, "\\t", 2), i++;
		} else if (c == '\r') {
			vd_buf_add(b, "\\r", 2), i++;
		} else if (c < 0x20 || c == 0x7f) {
			char e[6] = {'\\', 'u',		'0',
				     '0',  hex[c >> 4], hex[c & 15]};

			vd_buf_add(b, e, 6);
			i++;
		} else {
			len = utf8_len((const unsigned char *)s + i, n - i);
			if (len) {
				vd_buf_add(b, s + i, len);
				i += len;
			} else {
				vd_buf_add(b, "\xef\xbf\xbd", 3);
				i++;
			}
		}
	}
	vd_buf_add(b, "\"", 1);
}

void vd_json_put_real(struct vd_buf *b, double r)
{
	char tmp[40];

	if (isinf(r)) {
		vd_buf_addf(b, "%s", r < 0 ? "-1e999" : "1e999");
		return;
	}
	if (isnan(r)) {
		vd_buf_add(b, "null", 4);
		return;
	}
	snprintf(tmp, sizeof(tmp), "%.17g", r);
	/* Shortest form that reads back exactly. */
	for (int prec = 1; prec < 17; prec++) {
		char t[40];

		snprintf(t, sizeof(t), "%.*g", prec, r);
		if (strtod(t, NULL) == r) {
			memcpy(tmp, t, sizeof(t));
			break;
		}
	}
	vd_buf_add(b, tmp, strlen(tmp));
	if (!strpbrk(tmp, ".e"))
		vd_buf_add(b, ".0", 2);
}

void vd_base64_put(struct vd_buf *b, const unsigned char *data, size_t n)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
				 "tuvwxyz0123456789+/";

	for (size_t i = 0; i < n; i += 3) {
		unsigned int v = (unsigned int)data[i] << 16;
		char o[4];

		if (i + 1 < n)
			v |= (unsigned int)data[i + 1] << 8;
		if (i + 2 < n)
			v |= data[i + 2];
		o[0] = al[v >> 18];
		o[1] = al[(v >> 12) & 63];
		o[2] = i + 1 < n ? al[(v >> 6) & 63] : '=';
		o[3] = i + 2 < n ? al[v & 63] : '=';
		vd_buf_add(b, o, 4);
	}
}
