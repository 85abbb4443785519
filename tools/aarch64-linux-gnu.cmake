# Cross toolchain for the aarch64 build of the kernels and their C tests (Debian gcc-aarch64-linux-gnu):
#   cmake -S . -B build/arm -DRWKV_BUILD_TESTS=ON -DCMAKE_TOOLCHAIN_FILE=tools/aarch64-linux-gnu.cmake
#   qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu build/arm/tests/c/test_kernels
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
