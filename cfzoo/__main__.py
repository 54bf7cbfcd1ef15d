from cfzoo.cli import main

main()
