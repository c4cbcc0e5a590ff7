import org.flywaydb.core.Flyway;
import org.flywaydb.core.api.output.MigrateResult;

/**
 * Applies every pending migration of one directory, as an application calling Flyway at start-up.
 *
 * <p>Arguments: JDBC URL, user, directory of V{n}__name.sql files. The password comes from the
 * PGPASSWORD environment variable so it never appears in a process listing. Exit code 0 on
 * success, 1 when Flyway throws (the message goes to stderr).
 */
public final class FlywayBench {
    private FlywayBench() {}

    public static void main(String[] args) {
        if (args.length != 3) {
            System.err.println("usage: FlywayBench JDBC_URL USER MIGRATIONS_DIR");
            System.exit(64);
        }
        try {
            MigrateResult result = Flyway.configure()
                    .dataSource(args[0], args[1], System.getenv("PGPASSWORD"))
                    .locations("filesystem:" + args[2])
                    // An existing database (the zero-downtime benchmark's accounts table) is
                    // adopted as version 0, as a team introducing Flyway would do.
                    .baselineOnMigrate(true)
                    .baselineVersion("0")
                    .load()
                    .migrate();
            System.out.println("applied " + result.migrationsExecuted);
        } catch (RuntimeException e) {
            System.err.println(e.getMessage());
            System.exit(1);
        }
    }
}
