/*
 * sd_notify: one datagram per state change to $NOTIFY_SOCKET (a path, or an
 * abstract name when it starts with '@').  Silent when not under systemd.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sdnotify.h"

static int                notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t          notify_len;
static int                notify_held; /* not systemd's main pid (upgrade) */

void
sdnotify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t      n;

	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return;
	if ((n = strlen(path)) >= sizeof notify_addr.sun_path) {
		log_warnx("NOTIFY_SOCKET is too long, not notifying systemd");
		return;
	}
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, path, n);
	if (path[0] == '@')
		notify_addr.sun_path[0] = '\0';
	notify_len = offsetof(struct sockaddr_un, sun_path) + n;
	notify_fd =
	    socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (notify_fd == -1)
		log_warn("NOTIFY_SOCKET socket");
}

void
sdnotify(const char *fmt, ...)
{
	char    msg[1024];
	va_list ap;

	if (notify_fd == -1 || notify_held)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (sendto(notify_fd, msg, strlen(msg), MSG_NOSIGNAL,
		(struct sockaddr *)&notify_addr, notify_len) == -1)
		log_debug("sd_notify: %s: %m", msg);
}

/*
 * During a binary upgrade the main pid changes (upgrade.c): the new master
 * keeps quiet until the old one sent MAINPID=, the old one after that.
 */
void
sdnotify_hold(int held)
{
	notify_held = held;
}
