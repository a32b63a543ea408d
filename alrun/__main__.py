from alrun.cli import main

main()
