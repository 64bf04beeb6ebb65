/*
 * meshgate: command line entry point.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_conf.h"
#include "mg_log.h"
#include "mg_master.h"
#include "mg_pool.h"
#include "mg_snapshot.h"
#include "mg_worker.h"

#ifndef MG_SYSCONFDIR
#define MG_SYSCONFDIR "/etc"
#endif

static void
main_usage(FILE *out)
{
    fprintf(out,
            "usage: meshgate [-c FILE] [-t] [-p PIDFILE] [-v] [-h]\n"
            "  -c FILE     configuration file (default %s/meshgate/meshgate.conf);\n"
            "              conf.d/*.conf beside it is loaded too\n"
            "  -t          test the configuration and exit (0 ok, 1 errors)\n"
            "  -p PIDFILE  write the master's pid to PIDFILE\n"
            "  -v          print the version and exit\n"
            "  -h          print this help and exit\n"
            "signals: HUP reload, TERM/INT graceful stop, QUIT fast stop,\n"
            "         USR1 reopen log files\n",
            MG_SYSCONFDIR);
}

int
main(int argc, char **argv)
{
    mg_master_opts_t opts = { NULL, NULL };
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    int opt, rc, test_only = 0;
    unsigned i;
    static char default_conf[] = MG_SYSCONFDIR "/meshgate/meshgate.conf";

    opts.conf_file = default_conf;
    while ((opt = getopt(argc, argv, "c:tp:vh")) != -1) {
        switch (opt) {
        case 'c':
            opts.conf_file = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'p':
            opts.pid_file = optarg;
            break;
        case 'v':
            printf("meshgate %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            main_usage(stdout);
            return 0;
        default:
            main_usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "meshgate: unexpected argument \"%s\"\n", argv[optind]);
        main_usage(stderr);
        return 2;
    }

    snap = mg_conf_load(opts.conf_file, &errs);
    if (snap == NULL) {
        for (i = 0; i < errs.n; i++) {
            fprintf(stderr, "%s\n", errs.msgs[i]);
        }
        if (errs.n == 0) {
            fprintf(stderr, "%s: cannot load the configuration\n",
                    opts.conf_file);
        }
        if (test_only) {
            fprintf(stderr, "meshgate: configuration file %s test failed\n",
                    opts.conf_file);
        }
        mg_conf_errors_free(&errs);
        return 1;
    }
    if (test_only) {
        fprintf(stderr, "meshgate: configuration file %s test is successful\n",
                opts.conf_file);
        mg_snapshot_free(snap);
        return 0;
    }
    /* The process title reuses argv's memory: keep copies first. */
    opts.conf_file = mg_xstrdup(opts.conf_file);
    if (opts.pid_file != NULL) {
        opts.pid_file = mg_xstrdup(opts.pid_file);
    }
    mg_proc_title_init(argc, argv);
    rc = mg_master_run(&opts, snap);
    free((char *)opts.conf_file);
    free((char *)opts.pid_file);
    return rc;
}
