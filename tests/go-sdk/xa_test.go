package gosdk

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dtm-labs/client/dtmcli"
	"github.com/dtm-labs/client/dtmcli/dtmimp"
	"github.com/dtm-labs/client/dtmgrpc"
	"github.com/go-resty/resty/v2"
	"google.golang.org/protobuf/types/known/emptypb"
)

func needXa(t *testing.T) {
	t.Helper()
	needStore(t, "mysql")
	needStore(t, "postgres")
}

// An XA transaction over a MariaDB branch and a PostgreSQL branch, committed.
func TestXaHTTPCommit(t *testing.T) {
	needXa(t)
	from, to := newUsers(t)
	gid := newGid(t)
	err := dtmcli.XaGlobalTransaction(dtmHTTP, gid, func(xa *dtmcli.Xa) (*resty.Response, error) {
		if _, err := xa.CallBranch(&Req{Amount: 30, From: from, Store: "mysql"}, busiHTTP+"/XaTransOut?store=mysql"); err != nil {
			return nil, err
		}
		return xa.CallBranch(&Req{Amount: 30, To: to, Store: "postgres"}, busiHTTP+"/XaTransIn?store=postgres")
	})
	noErr(t, "XaGlobalTransaction", err)
	trans := waitStatus(t, gid, "succeed", 10*time.Second)
	equalList(t, "branches", branchStatuses(trans), []string{
		"01/rollback:prepared", "01/commit:succeed", "02/rollback:prepared", "02/commit:succeed"})
	equal(t, "mysql balance", balance(t, "mysql", from), 9970)
	equal(t, "postgres balance", balance(t, "postgres", to), 10030)
	noPreparedXa(t, gid)
}

// The second branch refuses: the first, prepared, is rolled back by the coordinator.
func TestXaHTTPRollback(t *testing.T) {
	needXa(t)
	from, to := newUsers(t)
	gid := newGid(t)
	err := dtmcli.XaGlobalTransaction(dtmHTTP, gid, func(xa *dtmcli.Xa) (*resty.Response, error) {
		if _, err := xa.CallBranch(&Req{Amount: 30, To: to, Store: "mysql"}, busiHTTP+"/XaTransIn?store=mysql"); err != nil {
			return nil, err
		}
		return xa.CallBranch(&Req{Amount: 20000, From: from, Store: "postgres"}, busiHTTP+"/XaTransOut?store=postgres")
	})
	if !errors.Is(err, dtmcli.ErrFailure) || !strings.Contains(err.Error(), "insufficient balance") {
		t.Fatalf("XaGlobalTransaction returned %v, not the branch's FAILURE", err)
	}
	trans := waitStatus(t, gid, "failed", 10*time.Second)
	equalList(t, "branches", branchStatuses(trans), []string{"01/rollback:succeed", "01/commit:prepared"})
	equal(t, "mysql balance", balance(t, "mysql", to), 10000)
	equal(t, "postgres balance", balance(t, "postgres", from), 10000)
	noPreparedXa(t, gid)
}

func TestXaGrpcCommit(t *testing.T) {
	needXa(t)
	from, to := newUsers(t)
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	err := dtmgrpc.XaGlobalTransaction(dtmGrpc, gid, func(xa *dtmgrpc.XaGrpc) error {
		if err := xa.CallBranch(pb(&Req{Amount: 30, From: from, Store: "postgres"}), grpcURL("XaTransOutPostgres"), &emptypb.Empty{}); err != nil {
			return err
		}
		return xa.CallBranch(pb(&Req{Amount: 30, To: to, Store: "mysql"}), grpcURL("XaTransInMysql"), &emptypb.Empty{})
	})
	noErr(t, "XaGlobalTransaction", err)
	waitStatus(t, gid, "succeed", 10*time.Second)
	equal(t, "postgres balance", balance(t, "postgres", from), 9970)
	equal(t, "mysql balance", balance(t, "mysql", to), 10030)
	noPreparedXa(t, gid)
}

func TestXaGrpcRollback(t *testing.T) {
	needXa(t)
	from, to := newUsers(t)
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	err := dtmgrpc.XaGlobalTransaction(dtmGrpc, gid, func(xa *dtmgrpc.XaGrpc) error {
		if err := xa.CallBranch(pb(&Req{Amount: 30, To: to, Store: "postgres"}), grpcURL("XaTransInPostgres"), &emptypb.Empty{}); err != nil {
			return err
		}
		return xa.CallBranch(pb(&Req{Amount: 20000, From: from, Store: "mysql"}), grpcURL("XaTransOutMysql"), &emptypb.Empty{})
	})
	if !errors.Is(dtmgrpc.GrpcError2DtmError(err), dtmcli.ErrFailure) {
		t.Fatalf("XaGlobalTransaction returned %v, not the branch's FAILURE", err)
	}
	waitStatus(t, gid, "failed", 10*time.Second)
	equal(t, "postgres balance", balance(t, "postgres", to), 10000)
	equal(t, "mysql balance", balance(t, "mysql", from), 10000)
	noPreparedXa(t, gid)
}

// noPreparedXa checks that neither database still holds a prepared XA branch of gid.
func noPreparedXa(t *testing.T, gid string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := []string{}
		rows, err := mysqlDB.Query("XA RECOVER")
		noErr(t, "XA RECOVER", err)
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			noErr(t, "scan", rows.Scan(ptrs...))
			if data, ok := vals[len(vals)-1].([]byte); ok && strings.HasPrefix(string(data), gid) {
				left = append(left, "mysql "+string(data))
			}
		}
		rows.Close()
		var n int
		noErr(t, "pg_prepared_xacts", pgDB.QueryRow("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE $1", gid+"%").Scan(&n))
		if n > 0 {
			left = append(left, "postgres")
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("XA branches of %s still prepared: %v", gid, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The app dies after its first XA branch is prepared, before Submit: once TimeoutToFail has
// passed the coordinator aborts and rolls the prepared branch back.
func TestXaHTTPAppGoneTimesOut(t *testing.T) {
	needXa(t)
	from, to := newUsers(t)
	gid := newGid(t)
	xa := &dtmcli.Xa{TransBase: *dtmimp.NewTransBase(gid, "xa", dtmHTTP, "")}
	xa.TimeoutToFail = 1
	xa.RetryInterval = 1
	noErr(t, "prepare", dtmimp.TransCallDtm(&xa.TransBase, "prepare"))
	_, err := xa.CallBranch(&Req{Amount: 30, From: from, Store: "postgres"}, busiHTTP+"/XaTransOut?store=postgres")
	noErr(t, "branch", err)
	// no Submit, no Abort: the app is gone
	trans := waitStatus(t, gid, "failed", 15*time.Second)
	equalList(t, "branches", branchStatuses(trans), []string{"01/rollback:succeed", "01/commit:prepared"})
	noPreparedXa(t, gid)
	equal(t, "postgres balance", balance(t, "postgres", from), 10000)
	equal(t, "mysql balance", balance(t, "mysql", to), 10000)
}
