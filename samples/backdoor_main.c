/* The program that loads the "backdoored" library (backdoor_lib.c). It makes
 * no sensitive call itself: everything comes from the library.
 *   cc -O2 -o backdoor_main backdoor_main.c -L. -lbackdoor -Wl,-rpath,'$ORIGIN'
 * Usage: backdoor_main plt|dlsym|manual|disk|dlmopen|wordexp|raw|syscall|plugin FILE | connect PORT | dlopen
 *        | load | mload | none   (load/mload: dlopen/dlmopen libplugin.so, whose constructor
 *        runs $BACKDOOR_CTOR as $BACKDOOR_CTOR_HOW says) 
 * `plugin` loads a second copy of the library (libplugin.so, next to the
 * program) with dlopen after start-up and has it call system through its PLT. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bd_plt_system(const char *cmd);
int bd_dlsym_system(const char *cmd);
int bd_manual_system(const char *cmd);
int bd_disk_system(const char *cmd);
int bd_dlmopen_system(const char *cmd);
int bd_wordexp(const char *cmd);
int bd_raw_execve(const char *cmd);
int bd_syscall_fn(const char *cmd);
int bd_connect(int port);
void *bd_dlopen(const char *lib);

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "none";
    const char *arg = argc > 2 ? argv[2] : "";
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "touch '%s'", arg);
    errno = 0;
    int r = 0;
    if (!strcmp(what, "plt")) r = bd_plt_system(cmd);
    else if (!strcmp(what, "dlsym")) r = bd_dlsym_system(cmd);
    else if (!strcmp(what, "manual")) r = bd_manual_system(cmd);
    else if (!strcmp(what, "disk")) r = bd_disk_system(cmd);
    else if (!strcmp(what, "dlmopen")) r = bd_dlmopen_system(cmd);
    else if (!strcmp(what, "wordexp")) r = bd_wordexp(cmd);
    else if (!strcmp(what, "raw")) r = bd_raw_execve(cmd);
    else if (!strcmp(what, "syscall")) r = bd_syscall_fn(cmd);
    else if (!strcmp(what, "connect")) r = bd_connect(atoi(arg));
    else if (!strcmp(what, "dlopen")) r = bd_dlopen("libm.so.6") != 0;
    else if (!strcmp(what, "load") || !strcmp(what, "mload")) {
        /* Only load libplugin.so (dlopen, or dlmopen into a new namespace):
         * what its constructor does is the test. */
        char path[4096];
        snprintf(path, sizeof path, "%s", argv[0]);
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, sizeof path - (slash ? (size_t)(slash + 1 - path) : 0), "libplugin.so");
#ifdef __GLIBC__
        void *h = !strcmp(what, "load") ? dlopen(path, RTLD_NOW) : dlmopen(LM_ID_NEWLM, path, RTLD_NOW);
#else
        void *h = dlopen(path, RTLD_NOW);
#endif
        r = h != 0;
    }
    else if (!strcmp(what, "plugin")) {
        char path[4096];
        snprintf(path, sizeof path, "%s", argv[0]);
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, sizeof path - (slash ? (size_t)(slash + 1 - path) : 0), "libplugin.so");
        void *h = dlopen(path, RTLD_NOW);
        int (*f)(const char *) = h ? (int (*)(const char *))dlsym(h, "bd_plt_system") : 0;
        r = f ? f(cmd) : -2;
    }
    printf("%s=%d errno=%s\n", what, r, errno == EPERM ? "EPERM" : errno ? "other" : "0");
    printf("done\n");
    return 0;
}
