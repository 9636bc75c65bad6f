from metarl_cli.cli import main

main()
