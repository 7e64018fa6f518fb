/*
 * config_control.c - the [global] keys of the control socket (control.c):
 * where it is and who may open it, who may register, and the limits of a
 * control connection.  Accounts are resolved as they are read, so that
 * nettcpd -t names an unknown one at its line.
 */
#include "config_int.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

#define CONTROL_COUNT_MAX 100000u

static const char *const control_keys[CK_COUNT] = {
	[CK_CONTROL] = "control",
	[CK_CONTROL_MODE] = "control_mode",
	[CK_CONTROL_GROUP] = "control_group",
	[CK_ALLOW_USERS] = "allow_users",
	[CK_ALLOW_GROUPS] = "allow_groups",
	[CK_CONTROL_TIMEOUT] = "control_timeout",
	[CK_CONTROL_MAX_REGISTRATIONS] = "control_max_registrations",
	[CK_CONTROL_MAX_CONNECTIONS] = "control_max_connections",
};

void
control_cfg_defaults(struct control_cfg *c)
{
	c->mode = CONFIG_DEFAULT_CONTROL_MODE;
	c->timeout = CONFIG_DEFAULT_CONTROL_TIMEOUT;
	c->max_registrations = CONFIG_DEFAULT_CONTROL_MAX_REGISTRATIONS;
	c->max_connections = CONFIG_DEFAULT_CONTROL_MAX_CONNECTIONS;
}

void
control_cfg_free(struct control_cfg *c)
{
	free(c->path);
	free(c->group);
	free(c->allow_uids);
	free(c->allow_gids);
}

/* A numeric id (all digits), or -1. */
static long
numeric_id(const char *s)
{
	unsigned long v;
	const char *d = s;

	if (decimal_parse(&d, 4294967294ul, &v) < 0 || *d != '\0')
		return -1;
	return (long)v;
}

/* A user by name or id: its uid, or -1 with an error at the line. */
static long
resolve_user(struct parser *p, const char *name)
{
	const struct passwd *pw;
	long id = numeric_id(name);

	if (id >= 0)
		return id;
	errno = 0;
	if ((pw = getpwnam(name)) == NULL) {
		add_error(p, p->lineno, "unknown user '%s' in allow_users%s%s",
		    name, errno != 0 ? ": " : "", errno != 0 ? strerror(errno) : "");
		return -1;
	}
	return (long)pw->pw_uid;
}

/* A group by name or id: its gid, or -1 with an error at the line. */
static long
resolve_group(struct parser *p, const char *key, const char *name)
{
	const struct group *gr;
	long id = numeric_id(name);

	if (id >= 0)
		return id;
	errno = 0;
	if ((gr = getgrnam(name)) == NULL) {
		add_error(p, p->lineno, "unknown group '%s' in %s%s%s", name, key,
		    errno != 0 ? ": " : "", errno != 0 ? strerror(errno) : "");
		return -1;
	}
	return (long)gr->gr_gid;
}

/* "a, b, c": each name resolved into ids (uids when users). */
static void
id_list(struct parser *p, const char *key, const char *value, int users,
    uint32_t **out, size_t *n)
{
	char *copy = strdup(value), *save = NULL, *item;
	uint32_t *ids = NULL;

	if (copy == NULL || (ids = calloc(strlen(value) / 2 + 1,
	    sizeof(*ids))) == NULL) {
		p->oom = 1;
		goto out;
	}
	*n = 0;
	for (item = strtok_r(copy, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save)) {
		long id;

		item += strspn(item, " \t");
		item[strcspn(item, " \t")] = '\0';
		if (item[0] == '\0')
			continue;
		id = users ? resolve_user(p, item) : resolve_group(p, key, item);
		if (id >= 0)
			ids[(*n)++] = (uint32_t)id;
	}
	if (*n == 0)
		add_error(p, p->lineno, "empty %s", key);
	*out = ids;
	ids = NULL;
out:
	free(ids);
	free(copy);
}

int
control_key(struct parser *p, const char *name, const char *value)
{
	struct control_cfg *c = &p->cfg->control;
	unsigned long v;
	const char *d = value;
	int k;

	for (k = 0; k < CK_COUNT; k++)
		if (strcmp(name, control_keys[k]) == 0)
			break;
	if (k == CK_COUNT)
		return 0;
	if (p->control_line[k] != 0) {
		add_error(p, p->lineno, "duplicate key '%s' (first at line %d)",
		    name, p->control_line[k]);
		return 1;
	}
	p->control_line[k] = p->lineno;
	switch (k) {
	case CK_CONTROL:
		if (value[0] != '/')
			add_error(p, p->lineno, "bad control '%s' (an absolute "
			    "path of a socket to create)", value);
		else if (strlen(value) >= 108)
			add_error(p, p->lineno, "control '%s' is longer than a "
			    "unix socket's 107 bytes", value);
		else if ((c->path = strdup(value)) == NULL)
			p->oom = 1;
		break;
	case CK_CONTROL_MODE:
		v = strtoul(value, (char **)&d, 8);
		if (value[0] < '0' || value[0] > '7' || *d != '\0' || v > 0777)
			add_error(p, p->lineno, "bad control_mode '%s' (octal "
			    "permissions up to 0777: 0660)", value);
		else
			c->mode = (unsigned)v;
		break;
	case CK_CONTROL_GROUP: {
		long gid = value[0] != '\0' ?
		    resolve_group(p, name, value) : -1;

		if (value[0] == '\0')
			add_error(p, p->lineno, "empty control_group");
		if (gid >= 0 && (c->group = strdup(value)) == NULL)
			p->oom = 1;
		c->gid = (gid_t)gid;
		break;
	}
	case CK_ALLOW_USERS:
		id_list(p, name, value, 1, &c->allow_uids,
		    &c->nallow_uids);
		break;
	case CK_ALLOW_GROUPS:
		id_list(p, name, value, 0, &c->allow_gids,
		    &c->nallow_gids);
		break;
	case CK_CONTROL_TIMEOUT:
		if (config_parse_duration(value, &c->timeout) < 0)
			add_error(p, p->lineno, "bad control_timeout '%s' (a "
			    "duration above 0 and at most 24h)", value);
		break;
	default: /* the two limits */
		if (decimal_parse(&d, CONTROL_COUNT_MAX, &v) < 0 || *d != '\0' ||
		    v == 0)
			add_error(p, p->lineno, "bad %s '%s' (an integer from 1 "
			    "to %u)", name, value, CONTROL_COUNT_MAX);
		else if (k == CK_CONTROL_MAX_REGISTRATIONS)
			c->max_registrations = (unsigned)v;
		else
			c->max_connections = (unsigned)v;
		break;
	}
	return 1;
}
