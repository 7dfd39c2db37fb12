/* core/cli.h — subcommands that live outside main.c. */
#ifndef X4_CORE_CLI_H
#define X4_CORE_CLI_H

/* x402r run [--yes] [--catalog FILE] [--max-cost AMOUNT] "task" */
int x4_cli_run(int argc, char **argv);

#endif
