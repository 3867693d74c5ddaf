from gitsail.cli.main import main

main()
