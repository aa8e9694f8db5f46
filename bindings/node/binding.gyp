{
  "targets": [
    {
      "target_name": "tidings",
      "sources": ["src/addon.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "include_dirs": ["<!(node scripts/paths.js include)"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": [
        "<!(node scripts/paths.js lib)",
        "-lpthread",
        "-ldl",
        "-lm",
        "-lrt"
      ],
      "ldflags": [
        "-Wl,--exclude-libs,ALL",
        "-Wl,--gc-sections",
        "-Wl,--strip-debug"
      ],
      "conditions": [
        ["OS=='mac'", {
          "xcode_settings": {
            "OTHER_LDFLAGS": ["-framework", "CoreFoundation", "-framework", "Security"]
          }
        }]
      ]
    }
  ]
}
