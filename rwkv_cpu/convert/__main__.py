"""`python -m rwkv_cpu.convert SRC OUT ...`: the same as `rwkv-cpu convert`."""
import sys

from . import main

sys.exit(main())
