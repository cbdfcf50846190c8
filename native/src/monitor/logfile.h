/* The container log, written by the monitor: one record per line of output
 * in the CRI format that conmon and the kubelet use,
 *   2024-05-01T10:00:00.123456789Z stdout F text of the line
 * where F ends a line and P is a piece of one (output that did not end in a
 * newline yet). The text is the bytes as the container wrote them, minus the
 * newline; the helper reads this file for `logs`. */
#ifndef CAPSA_MONITOR_LOGFILE_H
#define CAPSA_MONITOR_LOGFILE_H

#include <stddef.h>

enum log_stream { LOG_STDOUT = 1, LOG_STDERR = 2 };

/* Appends the records for one chunk of output with a single write(2).
 * Errors are ignored: a full disk must not stop the container. */
void log_write(int fd, enum log_stream stream, const char *data, size_t len);

/* RFC 3339 UTC time with nanoseconds, e.g. 2024-05-01T10:00:00.123456789Z
 * (buf holds at least 32 bytes); returns its length. */
size_t log_timestamp(char *buf, size_t len);

#endif
