/* replay_main.c: a main() for a fuzz harness built without libFuzzer (any compiler). Runs the harness once on
 * every file named on the command line; a directory means every file in it (not recursive). Prints how many
 * inputs ran; a crash or a failed FUZZ_CHECK ends the program abnormally, as under libFuzzer. */
#include <dirent.h>
#include <sys/stat.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int replay_file(const char *path) {
    size_t size = 0;
    uint8_t *data = fuzz_read_file(path, &size);
    if (!data) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    unsigned long n = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "cannot stat %s\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(sb.st_mode)) {
            if (replay_file(argv[i])) return 1;
            n++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) return 1;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
            if (replay_file(path)) { closedir(d); return 1; }
            n++;
        }
        closedir(d);
    }
    printf("%s: %lu inputs replayed, no crash\n", argv[0], n);
    return 0;
}
