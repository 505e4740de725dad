// Package gosdk runs dtm's published Go SDK (github.com/dtm-labs/client) against a running
// dtm-host (tests/go_sdk.rs runs it against the real binary). The business services (HTTP and
// gRPC) are started here, on free loopback ports. The environment names the rest:
//
//	DTM_HTTP       the coordinator's HTTP API, http://127.0.0.1:36789/api/dtmsvr (required)
//	DTM_GRPC       its gRPC address, 127.0.0.1:36790 (required)
//	MYSQL_ADDR     a MariaDB/MySQL, user root without a password
//	POSTGRES_ADDR  a PostgreSQL, user postgres trusted, max_prepared_transactions > 0 for XA
//	REDIS_ADDR     a Redis
//	GOSDK_SCOPE    the database and schema (and Redis key prefix) to create tables in (gosdk)
//	GOSDK_DEBUG    set: the SDK logs at debug level
//
// A test needing a server that is not given is skipped.
package gosdk

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/dtm-labs/client/dtmcli"
	"github.com/dtm-labs/client/dtmcli/dtmimp"
	"github.com/dtm-labs/client/dtmcli/logger"
	"github.com/dtm-labs/client/workflow"
	"github.com/go-redis/redis/v8"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/lib/pq"
	"google.golang.org/grpc"
)

var (
	// dtmHTTP is the coordinator's HTTP API, e.g. http://127.0.0.1:36789/api/dtmsvr.
	dtmHTTP string
	// dtmGrpc is the coordinator's gRPC address, e.g. 127.0.0.1:36790.
	dtmGrpc string
	// busiHTTP is this process's HTTP business service, e.g. http://127.0.0.1:40000/api/busi.
	busiHTTP string
	// busiGrpc is this process's gRPC business service, e.g. 127.0.0.1:40001.
	busiGrpc string
	// scope names this run's MySQL database, PostgreSQL schema and Redis key prefix.
	scope string

	mysqlConf, pgConf *dtmcli.DBConf
	mysqlDB, pgDB     *sql.DB
	rdb               *redis.Client
	grpcServer        *grpc.Server
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dtmHTTP = os.Getenv("DTM_HTTP")
	dtmGrpc = os.Getenv("DTM_GRPC")
	if dtmHTTP == "" || dtmGrpc == "" {
		fmt.Println("DTM_HTTP and DTM_GRPC must name a running coordinator (see README.md)")
		return 2
	}
	scope = orDefault(os.Getenv("GOSDK_SCOPE"), "gosdk")
	if os.Getenv("GOSDK_DEBUG") == "" {
		logger.InitLog("error")
	}
	dtmcli.SetBarrierTableName(scope + ".barrier")
	if err := openStores(); err != nil {
		fmt.Println("preparing the databases:", err)
		return 2
	}

	// a workflow app of its own (see TestWorkflowHTTPKilledApp) is told its port
	httpLn, err := net.Listen("tcp", "127.0.0.1:"+orDefault(os.Getenv("GOSDK_HTTP_PORT"), "0"))
	must(err)
	busiHTTP = "http://" + httpLn.Addr().String() + "/api/busi"
	go func() { _ = http.Serve(httpLn, httpRoutes()) }()

	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	busiGrpc = grpcLn.Addr().String()
	grpcServer = grpc.NewServer()
	registerBusiGrpc(grpcServer)
	workflow.InitGrpc(dtmGrpc, busiGrpc, grpcServer)
	go func() { _ = grpcServer.Serve(grpcLn) }()
	defer grpcServer.Stop()

	return m.Run()
}

// openStores creates this run's tables: dtm's barrier table and an account table, in a MySQL
// database and a PostgreSQL schema named `scope`, each only when its server is given.
func openStores() error {
	if addr := os.Getenv("MYSQL_ADDR"); addr != "" {
		host, port := splitAddr(addr)
		mysqlConf = &dtmcli.DBConf{Driver: dtmcli.DBTypeMysql, Host: host, Port: port, User: "root", Db: scope}
		admin, err := sql.Open("mysql", fmt.Sprintf("root@tcp(%s)/", addr))
		if err != nil {
			return err
		}
		defer admin.Close()
		for _, stmt := range []string{
			"CREATE DATABASE IF NOT EXISTS " + scope,
			`CREATE TABLE IF NOT EXISTS ` + scope + `.barrier (
				id BIGINT PRIMARY KEY AUTO_INCREMENT,
				trans_type VARCHAR(45) DEFAULT '', gid VARCHAR(128) DEFAULT '',
				branch_id VARCHAR(128) DEFAULT '', op VARCHAR(45) DEFAULT '',
				barrier_id VARCHAR(45) DEFAULT '', reason VARCHAR(45) DEFAULT '',
				create_time DATETIME DEFAULT NOW(), update_time DATETIME DEFAULT NOW(),
				UNIQUE KEY uniq_barrier (gid, branch_id, op, barrier_id))`,
			`CREATE TABLE IF NOT EXISTS ` + scope + `.user_account (
				user_id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)`,
		} {
			if _, err := admin.Exec(stmt); err != nil {
				return err
			}
		}
		if mysqlDB, err = dtmimp.StandaloneDB(*mysqlConf); err != nil {
			return err
		}
	}
	if addr := os.Getenv("POSTGRES_ADDR"); addr != "" {
		host, port := splitAddr(addr)
		// The server trusts every local connection; the SDK's DSN needs a non-empty password.
		pgConf = &dtmcli.DBConf{Driver: dtmcli.DBTypePostgres, Host: host, Port: port, User: "postgres",
			Password: "unused", Db: "postgres", Schema: scope}
		var err error
		if pgDB, err = dtmimp.StandaloneDB(*pgConf); err != nil {
			return err
		}
		for _, stmt := range []string{
			"CREATE SCHEMA IF NOT EXISTS " + scope,
			`CREATE TABLE IF NOT EXISTS ` + scope + `.barrier (
				id BIGSERIAL PRIMARY KEY,
				trans_type VARCHAR(45) DEFAULT '', gid VARCHAR(128) DEFAULT '',
				branch_id VARCHAR(128) DEFAULT '', op VARCHAR(45) DEFAULT '',
				barrier_id VARCHAR(45) DEFAULT '', reason VARCHAR(45) DEFAULT '',
				create_time TIMESTAMP DEFAULT NOW(), update_time TIMESTAMP DEFAULT NOW(),
				CONSTRAINT uniq_barrier UNIQUE (gid, branch_id, op, barrier_id))`,
			`CREATE TABLE IF NOT EXISTS ` + scope + `.user_account (
				user_id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)`,
		} {
			if _, err := pgDB.Exec(stmt); err != nil {
				return err
			}
		}
	}
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		rdb = redis.NewClient(&redis.Options{Addr: addr})
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			return err
		}
	}
	return nil
}

func splitAddr(addr string) (string, int64) {
	host, port, err := net.SplitHostPort(addr)
	must(err)
	p, err := strconv.ParseInt(port, 10, 64)
	must(err)
	return host, p
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
