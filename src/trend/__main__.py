from trend.cli import main

main()
