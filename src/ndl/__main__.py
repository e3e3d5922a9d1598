from ndl.cli import main

main()
