/*
 * json.c - the small JSON reader and writer of json.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

static void ws(struct vd_js *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' ||
				 *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int vd_js_string(struct vd_js *j, char *out, size_t n)
{
	size_t o = 0;
	bool full = false;

	ws(j);
	if (j->p >= j->end || *j->p != '"')
		return -EINVAL;
	for (j->p++; j->p < j->end && *j->p != '"'; j->p++) {
		char c = *j->p;

		if (c == '\\') {
			if (++j->p >= j->end)
				return -EINVAL;
			switch (*j->p) {
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case 'r':
				c = '\r';
				break;
			case 'b':
				c = '\b';
				break;
			case 'f':
				c = '\f';
				break;
			case 'u': {
				int v = 0;

				if (j->end - j->p < 5)
					return -EINVAL;
				for (int i = 1; i <= 4; i++) {
					int h = hexval(j->p[i]);

					if (h < 0)
						return -EINVAL;
					v = v * 16 + h;
				}
				j->p += 4;
				c = v > 0 && v < 0x80 ? (char)v : '?';
				break;
			}
			default:
				c = *j->p; /* \" \\ \/ */
			}
		}
		if (out && o + 1 < n)
			out[o++] = c;
		else
			full = true;
	}
	if (j->p >= j->end)
		return -EINVAL;
	j->p++;
	if (out && n)
		out[o] = '\0';
	return out && full ? -ENAMETOOLONG : 0;
}

int vd_js_bool(struct vd_js *j, bool *b)
{
	ws(j);
	if (j->end - j->p >= 4 && !strncmp(j->p, "true", 4)) {
		j->p += 4;
		*b = true;
		return 0;
	}
	if (j->end - j->p >= 5 && !strncmp(j->p, "false", 5)) {
		j->p += 5;
		*b = false;
		return 0;
	}
	return -EINVAL;
}

int vd_js_skip(struct vd_js *j)
{
	struct vd_js_it it = {0};
	int r;

	ws(j);
	if (j->p >= j->end)
		return -EINVAL;
	if (*j->p == '"')
		return vd_js_string(j, NULL, 0);
	if (*j->p == '{' || *j->p == '[') {
		while ((r = vd_js_next(j, &it, NULL, 0)) == 1)
			if (vd_js_skip(j))
				return -EINVAL;
		return r;
	}
	/* a number, true, false or null */
	if (!strchr("-0123456789tfn", *j->p))
		return -EINVAL;
	while (j->p < j->end && !strchr(",}] \t\r\n", *j->p))
		j->p++;
	return 0;
}

int vd_js_next(struct vd_js *j, struct vd_js_it *it, char *key, size_t n)
{
	ws(j);
	if (j->p >= j->end)
		return -EINVAL;
	if (!it->close) {
		if (*j->p != '{' && *j->p != '[')
			return -EINVAL;
		it->close = *j->p == '{' ? '}' : ']';
		j->p++;
		ws(j);
		if (j->p < j->end && *j->p == it->close) {
			j->p++;
			return 0;
		}
	} else if (*j->p == ',') {
		j->p++;
	} else if (*j->p == it->close) {
		j->p++;
		return 0;
	} else {
		return -EINVAL;
	}
	if (it->close == '}') {
		int r = vd_js_string(j, key, n);

		if (r && r != -ENAMETOOLONG)
			return r;
		ws(j);
		if (j->p >= j->end || *j->p != ':')
			return -EINVAL;
		j->p++;
	}
	ws(j);
	return 1;
}

int vd_js_member(struct vd_js *j, const char *key)
{
	struct vd_js_it it = {0};
	char k[128];
	int r;

	while ((r = vd_js_next(j, &it, k, sizeof(k))) == 1) {
		if (!strcmp(k, key))
			return 0;
		if (vd_js_skip(j))
			return -EINVAL;
	}
	return r ? r : -ENOENT;
}

int vd_js_quote(char *out, size_t n, const char *s)
{
	size_t o = 0;

#define PUT(c)                                                                 \
	do {                                                                   \
		if (o + 1 >= n)                                                \
			return -ENAMETOOLONG;                                  \
		out[o++] = (c);                                                \
	} while (0)
	PUT('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			PUT('\\');
			PUT((char)c);
		} else if (c < 0x20) {
			if (o + 7 >= n)
				return -ENAMETOOLONG;
			o += (size_t)snprintf(out + o, n - o, "\\u%04x", c);
		} else {
			PUT((char)c);
		}
	}
	PUT('"');
#undef PUT
	out[o] = '\0';
	return (int)o;
}
