from memplace.cli import main

main()
