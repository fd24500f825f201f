/* The bed's qrexec-client-vm for one qube (tests/qrexec-real/bed copies it to
 * DIR/qubes/NAME/bin/qrexec-client-vm). It runs Qubes' real qrexec-client-vm
 * with that qube's agent socket, domain id and vchan directory, which the real
 * one takes only from options and environment its callers do not set.
 *
 * A compiled program rather than a shell script because it sits in every
 * call's path, benchmarks included: the script it replaces (sh, id -u,
 * setpriv) cost more than a whole bare qrexec call. Called by root, it drops to
 * the bed's user first, as setpriv did: the vchan sockets it makes must be
 * reachable by the bed's processes. Test infrastructure only, never shipped. */
#define _GNU_SOURCE
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BED_UID 65534

static void die(const char *what) {
    fprintf(stderr, "bed qrexec-client-vm: %s\n", what);
    exit(1);
}

int main(int argc, char **argv) {
    char exe[PATH_MAX], qube[PATH_MAX], dir[PATH_MAX], buf[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        die("cannot read /proc/self/exe");
    exe[n] = '\0';
    /* exe = DIR/qubes/NAME/bin/qrexec-client-vm */
    snprintf(qube, sizeof qube, "%s", exe);
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(qube, '/');
        if (!slash)
            die("not in DIR/qubes/NAME/bin");
        *slash = '\0';
    }
    snprintf(dir, sizeof dir, "%s", qube);
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(dir, '/');
        if (!slash)
            die("not in DIR/qubes/NAME/bin");
        *slash = '\0';
    }
    snprintf(buf, sizeof buf, "%s/domain-id", qube);
    FILE *f = fopen(buf, "r");
    int id = -1;
    if (!f || fscanf(f, "%d", &id) != 1 || id < 1)
        die("cannot read the qube's domain-id");
    fclose(f);

    /* A test may ask for a record of the calls made: target, service, qube. */
    const char *call_log = getenv("QVAULT_SIM_CALL_LOG");
    if (call_log && *call_log) {
        const char *name = strrchr(qube, '/') + 1;
        FILE *log = fopen(call_log, "a");
        if (!log)
            die("cannot open QVAULT_SIM_CALL_LOG");
        fprintf(log, "%s %s %s\n", argc > 1 ? argv[1] : "", argc > 2 ? argv[2] : "", name);
        fclose(log);
    }

    if (geteuid() == 0) {
        if (setgroups(0, NULL) || setgid(BED_UID) || setuid(BED_UID))
            die("cannot drop to the bed's user");
    }
    snprintf(buf, sizeof buf, "%s/qrexec/lib", dir);
    setenv("LD_LIBRARY_PATH", buf, 1);
    snprintf(buf, sizeof buf, "%s/vchan", dir);
    setenv("VCHAN_SOCKET_DIR", buf, 1);
    snprintf(buf, sizeof buf, "%d", id);
    setenv("VCHAN_DOMAIN", buf, 1);

    char real[PATH_MAX + 32], sock[PATH_MAX + 32];
    snprintf(real, sizeof real, "%s/qrexec/bin/qrexec-client-vm", dir);
    snprintf(sock, sizeof sock, "--agent-socket=%s/agent.sock", qube);
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args)
        die("out of memory");
    args[0] = real;
    args[1] = sock;
    for (int i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    execv(real, args);
    perror("bed qrexec-client-vm: exec");
    return 1;
}
