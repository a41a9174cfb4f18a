from blockspec.cli import main

main()
