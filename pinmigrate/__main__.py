from pinmigrate.cli import main

main()
