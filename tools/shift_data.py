#!/usr/bin/env python3
"""Copy a .rwkv file with its data region moved SHIFT bytes later (a multiple of 64): zeros are inserted before
the data and the header's data_offset and file_size grow by SHIFT; every tensor keeps its bytes and its offset
within the data region (docs/FILE_FORMAT.md). So the copy differs from the original only in where each tensor
starts within its memory page, which is what docs/PERFORMANCE.md ("Other versions", fifth session) measured:

    python tools/shift_data.py IN.rwkv OUT.rwkv SHIFT
    python tools/bench_versions.py IN.rwkv OUT.rwkv --fresh /dev/shm --tokens 96

It also re-places a file written before the converter chose the phase (writer.MATRIX_PHASE): `--to-phase` picks
the SHIFT that puts the first matrix at 64 mod 512 (all matrices, where every tensor size is a multiple of 512)."""
import argparse
import struct
import sys

HEADER = 256


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("shift", nargs="?", type=int, default=None, help="bytes, a multiple of 64")
    ap.add_argument("--to-phase", action="store_true", help="shift so that the first matrix is at 64 mod 512")
    args = ap.parse_args()
    with open(args.src, "rb") as f:
        head = bytearray(f.read(HEADER))
        if head[:8] != b"RWKVCPU\0":
            print(f"{args.src}: not a .rwkv file", file=sys.stderr)
            return 2
        n = struct.unpack_from("<I", head, 48)[0]
        data_offset, _, file_size = struct.unpack_from("<QQQ", head, 96)
        f.seek(HEADER)
        rest = f.read(data_offset - HEADER)  # tensor table, metadata, tokenizer
        if args.to_phase:
            first = min(struct.unpack_from("<Q", rest, 128 * i + 104)[0] for i in range(n)
                        if struct.unpack_from("<I", rest, 128 * i + 68)[0] == 2)  # 2-D tensors
            shift = (64 - (data_offset + first)) % 512
        elif args.shift is not None:
            shift = args.shift
        else:
            ap.error("give SHIFT or --to-phase")
        if shift < 0 or shift % 64:
            ap.error("SHIFT must be a non-negative multiple of 64")
        struct.pack_into("<Q", head, 96, data_offset + shift)
        struct.pack_into("<Q", head, 112, file_size + shift)
        with open(args.dst, "wb") as o:
            o.write(head)
            o.write(rest)
            o.write(bytes(shift))
            while True:
                chunk = f.read(64 << 20)
                if not chunk:
                    break
                o.write(chunk)
    print(f"{args.dst}: data region at {data_offset + shift} (was {data_offset}, +{shift})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
