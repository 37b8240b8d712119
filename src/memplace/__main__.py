from memplace.start import main

main()
