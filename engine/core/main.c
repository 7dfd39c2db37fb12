/* core/main.c — placeholder entry point, replaced by the CLI. */
#include <stdio.h>
int main(void) { puts("x402r " X4_VERSION); return 0; }
