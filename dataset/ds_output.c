/* dataset/ds_output.c -- the output rule that every tool applies to every file it writes.
 *
 * 1. An output is never one of the command's inputs: the same file is found by device and inode,
 *    so symlinks, hard links, "..", and "./" all count as the same file.
 * 2. An existing output is replaced only when it is of the kind being written and that kind is not
 *    a dataset (a policy over a policy, a PNG over a PNG). A dataset, or a file of another kind
 *    (a dataset under a policy's name, a policy under a PNG's), is replaced only with --force.
 * The kind of a file is read from its content, never from its name. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds_internal.h"

static const char *const kind_names[] = {
    [DS_KIND_NONE] = "nothing",
    [DS_KIND_EMPTY] = "empty file",
    [DS_KIND_DIR] = "directory",
    [DS_KIND_DATASET] = "dataset",
    [DS_KIND_HDF5] = "policy or other HDF5 file",
    [DS_KIND_PNG] = "PNG image",
    [DS_KIND_TEXT] = "text file",
    [DS_KIND_OTHER] = "file of unknown kind",
};

const char *ds_kind_name(dsKind k) {
  return k >= 0 && k < (int)TK_ARRAY_LEN(kind_names) && kind_names[k] ? kind_names[k] : "file";
}

/* An HDF5 file with a /data group (robomimic's layout, ours or another tool's) is a dataset. */
static dsKind hdf5_kind(const char *path) {
  ds_h5_init();
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  hid_t f = fapl < 0 ? -1 : H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (fapl >= 0) H5Pclose(fapl);
  if (f < 0) return DS_KIND_OTHER; /* damaged or locked: unknown, so never replaced without --force */
  dsKind k = DS_KIND_HDF5;
  H5O_info_t oi;
  if (H5Lexists(f, "data", H5P_DEFAULT) > 0 &&
      H5Oget_info_by_name2(f, "data", &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 && oi.type == H5O_TYPE_GROUP)
    k = DS_KIND_DATASET;
  H5Fclose(f);
  return k;
}

dsKind ds_file_kind(const char *path) {
  struct stat st;
  if (stat(path, &st)) return DS_KIND_NONE;
  if (S_ISDIR(st.st_mode)) return DS_KIND_DIR;
  if (!S_ISREG(st.st_mode)) return DS_KIND_OTHER;
  if (st.st_size == 0) return DS_KIND_EMPTY;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return DS_KIND_OTHER;
  unsigned char head[4096];
  ssize_t n = pread(fd, head, sizeof head, 0);
  int hdf5 = 0;
  /* the HDF5 signature sits at 0, 512, 1024, 2048, ... (after a user block) */
  static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  for (off_t at = 0; !hdf5 && at < st.st_size; at = at ? at * 2 : 512) {
    unsigned char b[8];
    if (pread(fd, b, 8, at) == 8 && !memcmp(b, sig, 8)) hdf5 = 1;
  }
  close(fd);
  if (hdf5) return hdf5_kind(path);
  /* the toolkit's other binary formats, by their magic */
  static const struct {
    const char *magic;
    dsKind kind;
  } magics[] = {{"\x89PNG\r\n\x1a\n", DS_KIND_PNG}, {"DKINPUT1", DS_KIND_INPUT}};
  for (int i = 0; i < (int)TK_ARRAY_LEN(magics); i++)
    if (n >= 8 && !memcmp(head, magics[i].magic, 8)) return magics[i].kind;
  if (n > 0 && !memchr(head, 0, (size_t)n)) return DS_KIND_TEXT;
  return DS_KIND_OTHER;
}

int ds_same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int ds_output_check(const char *out, dsKind writes, const char *const *inputs, int ninputs, int force) {
  if (!out || !*out) return tk_error(TK_EINVAL, "empty output path");
  for (int i = 0; i < ninputs; i++)
    if (inputs[i] && ds_same_file(out, inputs[i]))
      return tk_error(TK_EINVAL, "output %s is the input %s: refusing to replace it (choose another output)",
                      out, inputs[i]);
  dsKind have = ds_file_kind(out);
  if (have == DS_KIND_NONE || have == DS_KIND_EMPTY) return 0;
  if (have == DS_KIND_DIR && writes != DS_KIND_DIR)
    return tk_error(TK_EINVAL, "output %s is a directory", out);
  if (have == writes && have != DS_KIND_DATASET && have != DS_KIND_OTHER) return 0;
  if (force) return 0;
  if (have == DS_KIND_DATASET && writes == DS_KIND_DATASET)
    return tk_error(TK_EINVAL,
                    "output %s is an existing dataset: refusing to replace it (pass --force to replace it)",
                    out);
  return tk_error(
      TK_EINVAL,
      "output %s exists and is a %s, not a %s: refusing to replace it (pass --force to replace it)", out,
      ds_kind_name(have), ds_kind_name(writes));
}
