# The compiled cffi module (built by build_ffi.py from ffi/include/tidings.h).
from typing import Any

ffi: Any
lib: Any
